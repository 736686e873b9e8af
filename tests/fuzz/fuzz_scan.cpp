// libFuzzer target: main's one-pass task scanner against the parsed path. Invariant: whenever
// scan_task_message() vouches for a text, decoding it, reading its task fields and hashing
// its identity give exactly what the scanner gave (tests/support/scan_oracle.h).

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "dispatcherd/log.h"
#include "scan_oracle.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  dispatcherd::log::set_level(dispatcherd::log::Level::Critical);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  if (!dispatcherd::testing::scan_agrees_with_parse(input).empty()) std::abort();
  return 0;
}
