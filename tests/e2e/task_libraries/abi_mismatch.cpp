// A task library built for another task ABI: what DISPATCHERD_TASK_LIBRARY() would emit
// under a future header. dispatcherd must refuse it.
#include <dispatcherd/task.h>

extern "C" __attribute__((visibility("default"))) const int dispatcherd_task_abi_version =
    ::dispatcherd::kTaskAbiVersion + 1;

namespace {
nlohmann::json noop(dispatcherd::TaskContext&) {
  return nullptr;
}
}  // namespace

DISPATCHERD_TASK("bad.abi_mismatch", noop);
