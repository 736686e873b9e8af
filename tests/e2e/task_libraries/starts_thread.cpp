// A task library whose static initialisation starts a thread (as a careless logging or
// metrics library might): dispatcherd must refuse it, since workers are forked from main.
#include <dispatcherd/task.h>

#include <chrono>
#include <thread>

DISPATCHERD_TASK_LIBRARY();

namespace {

nlohmann::json noop(dispatcherd::TaskContext&) {
  return nullptr;
}

[[maybe_unused]] const bool started = [] {
  std::thread([] { std::this_thread::sleep_for(std::chrono::hours(1)); }).detach();
  return true;
}();

}  // namespace

DISPATCHERD_TASK("bad.starts_thread", noop);
