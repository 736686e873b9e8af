#include "dispatcherd/worker/builtin_tasks.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <stdexcept>

#include "dispatcherd/fd.h"

namespace dispatcherd::worker {

const char kSelfCheckTaskName[] = "dispatcherd.builtin.self_check";

namespace {

using nlohmann::json;

// Longest sleep accepted; keeps the deadline arithmetic far from time_t overflow.
constexpr double kMaxSleepSeconds = 1e9;

timespec now_monotonic() {
  timespec t{};
  ::clock_gettime(CLOCK_MONOTONIC, &t);
  return t;
}

// Blocks SIGUSR1 for its lifetime and restores the previous mask on every exit path,
// including the TaskCancelled throw.
class BlockCancelSignal {
 public:
  BlockCancelSignal() {
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    sigprocmask(SIG_BLOCK, &block, &old_);
  }
  BlockCancelSignal(const BlockCancelSignal&) = delete;
  BlockCancelSignal& operator=(const BlockCancelSignal&) = delete;
  ~BlockCancelSignal() { sigprocmask(SIG_SETMASK, &old_, nullptr); }
  /// The mask to wait with: the old one, with SIGUSR1 deliverable.
  sigset_t wait_mask() const {
    sigset_t m = old_;
    sigdelset(&m, SIGUSR1);
    return m;
  }

 private:
  sigset_t old_{};
};

json noop(TaskContext&) {
  return nullptr;
}

json sleep_task(TaskContext& ctx) {
  const json* seconds = nullptr;
  if (!ctx.args().empty()) {
    seconds = &ctx.args()[0];
  } else if (auto it = ctx.kwargs().find("seconds"); it != ctx.kwargs().end()) {
    seconds = &*it;
  }
  if (seconds == nullptr)
    throw std::invalid_argument("sleep needs its seconds as args[0] or kwargs 'seconds'");
  if (!seconds->is_number() || !std::isfinite(seconds->get<double>()) || seconds->get<double>() < 0)
    throw std::invalid_argument("sleep: seconds must be a number >= 0, got " + seconds->dump());
  bool ignore_cancel = false;
  if (auto it = ctx.kwargs().find("ignore_cancel"); it != ctx.kwargs().end()) {
    if (!it->is_boolean()) throw std::invalid_argument("sleep: 'ignore_cancel' must be a bool");
    ignore_cancel = it->get<bool>();
  }
  cancellable_sleep(ctx, seconds->get<double>(), ignore_cancel);
  return nullptr;
}

json echo(TaskContext& ctx) {
  return json{{"args", ctx.args()}, {"kwargs", ctx.kwargs()}};
}

json fail(TaskContext& ctx) {
  auto it = ctx.kwargs().find("message");
  if (it != ctx.kwargs().end() && it->is_string()) throw std::runtime_error(it->get<std::string>());
  throw std::runtime_error("fail task failed");
}

json record(TaskContext& ctx) {
  auto it = ctx.kwargs().find("path");
  if (it == ctx.kwargs().end() || !it->is_string() || it->get_ref<const std::string&>().empty())
    throw std::invalid_argument("record needs a non-empty string kwarg 'path'");
  const std::string& path = it->get_ref<const std::string&>();
  Fd fd(::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644));
  if (!fd) throw std::runtime_error("record: cannot open " + path + ": " + std::strerror(errno));
  // One write(2) on an O_APPEND fd: concurrent workers' lines never interleave, so the file
  // holds exactly one whole line per run and tests can count runs per uuid.
  std::string line = ctx.uuid() + "\n";
  ssize_t n;
  do {
    n = ::write(fd.get(), line.data(), line.size());
  } while (n < 0 && errno == EINTR);
  if (n != static_cast<ssize_t>(line.size()))
    throw std::runtime_error("record: write to " + path +
                             " failed: " + (n < 0 ? std::strerror(errno) : "short write"));
  return nullptr;
}

[[noreturn]] json crash(TaskContext&) {
  std::abort();
}

[[noreturn]] json exit_task(TaskContext& ctx) {
  int code = 3;
  if (auto it = ctx.kwargs().find("code"); it != ctx.kwargs().end() && it->is_number_integer())
    code = it->get<int>();
  ::_exit(code);
}

json self_check(TaskContext& ctx) {
  auto it = ctx.message().find("task");
  if (it == ctx.message().end() || !it->is_string()) return nullptr;
  return self_check_result(it->get_ref<const std::string&>());
}

}  // namespace

std::string self_check_result(std::string_view task) {
  auto first = task.find('"');
  auto last = task.rfind('"');
  if (first == std::string_view::npos || last == first) return std::string(task);
  return std::string(task.substr(first + 1, last - first - 1));
}

void cancellable_sleep(const TaskContext& ctx, double seconds, bool ignore_cancel) {
  seconds = std::min(std::max(seconds, 0.0), kMaxSleepSeconds);
  timespec deadline = now_monotonic();
  auto whole = static_cast<time_t>(seconds);
  deadline.tv_sec += whole;
  deadline.tv_nsec += static_cast<long>((seconds - static_cast<double>(whole)) * 1e9);
  if (deadline.tv_nsec >= 1000000000L) {
    deadline.tv_sec += 1;
    deadline.tv_nsec -= 1000000000L;
  }
  BlockCancelSignal blocked;
  const sigset_t wait_mask = blocked.wait_mask();
  for (;;) {
    if (!ignore_cancel && ctx.cancelled()) throw TaskCancelled();
    timespec now = now_monotonic();
    timespec left{deadline.tv_sec - now.tv_sec, deadline.tv_nsec - now.tv_nsec};
    if (left.tv_nsec < 0) {
      left.tv_sec -= 1;
      left.tv_nsec += 1000000000L;
    }
    if (left.tv_sec < 0) return;
    // Returns on timeout or with EINTR when a signal (the cancel) was handled meanwhile; the
    // loop then re-checks the flag and the remaining time either way.
    ::ppoll(nullptr, 0, &left, &wait_mask);
  }
}

DISPATCHERD_TASK("dispatcherd.builtin.noop", noop);
DISPATCHERD_TASK("dispatcherd.builtin.sleep", sleep_task);
DISPATCHERD_TASK("dispatcherd.builtin.echo", echo);
DISPATCHERD_TASK("dispatcherd.builtin.fail", fail);
DISPATCHERD_TASK("dispatcherd.builtin.record", record);
DISPATCHERD_TASK("dispatcherd.builtin.crash", crash);
DISPATCHERD_TASK("dispatcherd.builtin.exit", exit_task);
DISPATCHERD_TASK(kSelfCheckTaskName, self_check);

}  // namespace dispatcherd::worker
