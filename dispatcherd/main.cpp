// dispatcherd: the service's entry point. Everything but argument handling lives in
// dispatcherd_core (service.cpp wires the modules).
#include <CLI/CLI.hpp>

#include "dispatcherd/log.h"

int main(int argc, char** argv) {
  CLI::App app{"dispatcherd - run background tasks received over Postgres LISTEN/NOTIFY"};
  std::string config = "dispatcher.yml";
  app.add_option("--config", config, "config file (version 2)");
  CLI11_PARSE(app, argc, argv);
  LOG_INFO("dispatcherd: not implemented yet");
  return 0;
}
