// dispatcherctl: asks a running dispatcherd questions and sends it orders.
#include <CLI/CLI.hpp>

int main(int argc, char** argv) {
  CLI::App app{"dispatcherctl - control a running dispatcherd"};
  CLI11_PARSE(app, argc, argv);
  return 0;
}
