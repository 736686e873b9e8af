// A shared object with tasks but without DISPATCHERD_TASK_LIBRARY(): dispatcherd must refuse it.
#include <dispatcherd/task.h>

namespace {
nlohmann::json noop(dispatcherd::TaskContext&) {
  return nullptr;
}
}  // namespace

DISPATCHERD_TASK("bad.no_abi_symbol", noop);
