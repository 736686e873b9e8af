// dispatcherctl: asks running dispatcherd services questions and sends them orders
// (upstream-spec §5.2), and publishes tasks (`submit`, ours).

#include <iostream>
#include <string>
#include <vector>

#include "app.h"
#include "options.h"

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  const auto parsed = dispatcherctl::parse_command_line(args, std::cout, std::cerr);
  if (!parsed.invocation) return parsed.exit_code;
  return dispatcherctl::run_invocation(*parsed.invocation, std::cout, std::cerr);
}
