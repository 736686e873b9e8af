// libFuzzer target: the control command table (dispatcherd/control/commands.h) over a fake
// view holding a few messages. The input is "<command>\n<control_data JSON>"; control_data
// that is not JSON is passed as a string, an empty one as null (absent). Invariants: nothing
// throws or crashes; the reply is an object that dump_reply() serializes to parseable JSON;
// an unknown command gets the "No control method" error.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "dispatcherd/control/commands.h"
#include "dispatcherd/control_protocol.h"
#include "dispatcherd/log.h"
#include "dispatcherd/message.h"
#include "fake_control_view.h"

using namespace dispatcherd;

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

testing::FakeControlView make_view() {
  testing::FakeControlView v;
  v.running = {{0, {{"task", "a.b"}, {"uuid", "u0"}, {"args", {1, 2}}}},
               {3, {{"task", "a.c"}, {"uuid", "u1"}, {"kwargs", {{"k", "v"}}}}}};
  v.blocked = {{{"task", "a.b"}, {"uuid", "u2"}}};
  v.queued = {{{"task", "x"}, {"uuid", "u3"}, {"args", nlohmann::json::array()}}};
  v.delayed = {{{"task", "a.b"}, {"uuid", "u4"}, {"delay", 5}}};
  v.workers_body = {{"worker-0", {{"pid", 1}}}};
  return v;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  log::set_level(log::Level::Critical);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const auto nl = input.find('\n');
  const std::string command(input.substr(0, nl));
  const std::string_view rest = nl == std::string_view::npos ? "" : input.substr(nl + 1);
  nlohmann::json control_data;
  if (!rest.empty()) {
    Result<json> parsed = parse_json(rest);
    control_data = parsed ? std::move(*parsed) : nlohmann::json(std::string(rest));
  }
  testing::FakeControlView view = make_view();
  if (size % 7 == 0) view.workers_throws = "boom";
  if (size % 5 == 0) view.submit_error = "no ControlProducer";
  nlohmann::ordered_json reply = run_control_command(view, command, control_data);
  check(reply.is_object());
  std::string text = dump_reply(reply);
  Result<json> back = parse_json(text);
  check(back.ok() && back->is_object());
  bool known = false;
  for (const auto& c : kControlCommands) known = known || command == c.name;
  if (!known) check(reply.contains("error"));
  return 0;
}
