// libFuzzer target: one broker payload through decoding, field reading, identity hashing and
// Python-style dumping. Invariants: nothing throws or crashes; the dump is ASCII and parses
// back to an equal value with the same identity hash.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "dispatcherd/log.h"
#include "dispatcherd/message.h"

using namespace dispatcherd;

namespace {
void check(bool ok) {
  if (!ok) std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  log::set_level(log::Level::Critical);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  Result<json> decoded = decode_payload(input);
  if (!decoded) return 0;
  const json& obj = *decoded;
  check(obj.is_object());
  (void)read_task_fields(obj);
  (void)read_control_fields(obj);
  (void)is_chunk(obj);
  (void)is_control(obj);
  const std::uint64_t hash = identity_hash(obj);

  for (const std::string& text : {dump_python(obj), dump_compact(obj)}) {
    for (unsigned char c : text) check(c < 0x80);
    Result<json> back = parse_json(text);
    check(back.ok());
    check(*back == obj);
    check(identity_hash(*back) == hash);
  }
  return 0;
}
