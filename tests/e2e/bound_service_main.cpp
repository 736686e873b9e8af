// A test-only service in library mode (upstream-spec §4.5, DESIGN section 2): it links
// dispatcherd_core like the `dispatcherd` binary does, adds one `bind` task and runs the
// service. The e2e tests find it as DISPATCHERD_BOUND_SERVICE_BIN.
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "dispatcherd/task.h"

namespace {

/// Starts a second task through the control `run` command from inside a worker:
/// kwargs `path` (where the child `record` task appends its uuid), `child_uuid` (the child's
/// uuid) and `reply_path` (where the control reply is written as one JSON line).
nlohmann::json run_record(dispatcherd::TaskContext& ctx) {
  const nlohmann::json& kw = ctx.kwargs();
  nlohmann::json child = {{"task", "dispatcherd.builtin.record"},
                          {"uuid", kw.at("child_uuid")},
                          {"kwargs", {{"path", kw.at("path")}}}};
  nlohmann::json reply = ctx.control("run", child);
  std::ofstream(kw.at("reply_path").get<std::string>(), std::ios::app) << reply.dump() << "\n";
  return reply;
}

DISPATCHERD_TASK("tests.bound.run_record", run_record);

}  // namespace

int main(int argc, char** argv) {
  return dispatcherd::run_service(argc, argv);
}
