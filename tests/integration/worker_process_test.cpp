// The worker loop in a real forked process: what needs concurrency (a cancel from another
// process, idle hooks, signals to the process, SIGKILL escalation, orphaning, crashes).
// No Postgres needed.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <optional>
#include <string>
#include <thread>

#include "dispatcherd/fd.h"
#include "dispatcherd/log.h"
#include "dispatcherd/pool/ipc.h"
#include "dispatcherd/task.h"
#include "dispatcherd/worker/worker_loop.h"

namespace dispatcherd {
namespace {

using ipc::Frame;
using ipc::FrameType;
using ipc::TaskStatus;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

void sleep_s(double s) {
  std::this_thread::sleep_for(std::chrono::duration<double>(s));
}

// One forked worker and the main side of its two pipes.
class WorkerProcess {
 public:
  /// Forks a worker; `child_setup` runs in the child before the loop (e.g. to set hooks).
  template <class F>
  explicit WorkerProcess(double idle_timeout, F child_setup) {
    int to_worker[2], from_worker[2];
    EXPECT_EQ(::pipe2(to_worker, O_CLOEXEC), 0);
    EXPECT_EQ(::pipe2(from_worker, O_CLOEXEC), 0);
    const pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ == 0) {
      ::close(to_worker[1]);
      ::close(from_worker[0]);
      log::set_level(log::Level::Critical);
      child_setup();
      WorkerSettings s;
      s.worker_id = 1;
      s.idle_timeout = idle_timeout;
      s.main_pid = parent;
      ::_exit(run_worker_loop(to_worker[0], from_worker[1], s));
    }
    ::close(to_worker[0]);
    ::close(from_worker[1]);
    in_.reset(to_worker[1]);
    out_.reset(from_worker[0]);
  }
  WorkerProcess(const WorkerProcess&) = delete;
  WorkerProcess& operator=(const WorkerProcess&) = delete;
  ~WorkerProcess() {
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  pid_t pid() const { return pid_; }

  void send(FrameType t, std::uint64_t seq, std::string_view payload = {}) {
    std::string buf;
    ipc::append_frame(buf, t, seq, payload);
    ASSERT_EQ(::write(in_.get(), buf.data(), buf.size()), static_cast<ssize_t>(buf.size()));
  }
  void task(std::uint64_t seq, const json& body) {
    const std::string uuid = "u-" + std::to_string(seq);
    send(FrameType::kTask, seq, ipc::encode_task({uuid, "", body.dump()}));
  }
  void cancel(std::uint64_t seq) {
    sigval v{};
    v.sival_int = cancel_signal_value(seq);
    ASSERT_EQ(::sigqueue(pid_, SIGUSR1, v), 0);
  }

  /// The next frame within `timeout` seconds; nullopt on timeout or EOF.
  std::optional<Frame> next(double timeout) {
    const auto deadline = Clock::now() + std::chrono::duration<double>(timeout);
    for (;;) {
      if (auto f = reader_.next()) return f;
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) return std::nullopt;
      pollfd p{out_.get(), POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char buf[65536];
      ssize_t n = ::read(out_.get(), buf, sizeof buf);
      if (n <= 0) return std::nullopt;
      reader_.feed(buf, static_cast<std::size_t>(n));
    }
  }
  /// The next frame, which must be a done for `seq`.
  ipc::DonePayload done(std::uint64_t seq, double timeout) {
    auto f = next(timeout);
    EXPECT_TRUE(f.has_value()) << "no done within " << timeout << " s";
    if (!f) return {};
    EXPECT_EQ(f->type, FrameType::kDone);
    EXPECT_EQ(f->seq, seq);
    return ipc::decode_done(f->payload).value_or(ipc::DonePayload{});
  }
  /// Waits for the process to exit and returns its wait status.
  int wait() {
    int status = 0;
    EXPECT_EQ(::waitpid(pid_, &status, 0), pid_);
    reaped_ = true;
    return status;
  }

 private:
  pid_t pid_ = -1;
  bool reaped_ = false;
  Fd in_, out_;
  ipc::FrameReader reader_;
};

void no_setup() {}

json sleep_task(double seconds, bool ignore_cancel = false) {
  return {{"task", "dispatcherd.builtin.sleep"},
          {"args", {seconds}},
          {"kwargs", {{"ignore_cancel", ignore_cancel}}}};
}

void expect_ready(WorkerProcess& w) {
  auto f = w.next(5);
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->type, FrameType::kReady);
}

void stop_and_expect_clean_exit(WorkerProcess& w) {
  w.send(FrameType::kStop, 0);
  auto f = w.next(5);
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->type, FrameType::kShutdown);
  int st = w.wait();
  EXPECT_TRUE(WIFEXITED(st));
  EXPECT_EQ(WEXITSTATUS(st), 0);
}

TEST(WorkerProcess, Spec7_10_OnIdleFiresEveryIdleTimeout) {
  char path[] = "/tmp/worker_idle.XXXXXX";
  Fd tmp(::mkstemp(path));
  ASSERT_TRUE(tmp);
  const std::string file = path;
  WorkerProcess w(0.05, [&] {
    WorkerHooks h;
    h.on_idle = [&] { std::ofstream(file, std::ios::app) << "idle\n"; };
    set_worker_hooks(h);
  });
  expect_ready(w);
  sleep_s(0.4);
  stop_and_expect_clean_exit(w);
  std::ifstream in(file);
  int idles = 0;
  for (std::string l; std::getline(in, l);) ++idles;
  EXPECT_GE(idles, 3);
  EXPECT_LE(idles, 9);
  ::unlink(path);
}

TEST(WorkerProcess, Spec7_6_QueuedCancelFromMainInterruptsASleepPromptly) {
  WorkerProcess w(0, no_setup);
  expect_ready(w);
  w.task(5, sleep_task(30));
  sleep_s(0.1);
  const auto t0 = Clock::now();
  w.cancel(5);
  auto d = w.done(5, 5);
  EXPECT_EQ(d.status, TaskStatus::kCancelled);
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 0.5);
  stop_and_expect_clean_exit(w);
}

TEST(WorkerProcess, Spec7_6_LateCancelForAnEarlierTaskIsIgnored) {
  WorkerProcess w(0, no_setup);
  expect_ready(w);
  w.task(6, sleep_task(0.3));
  sleep_s(0.05);
  w.cancel(5);
  auto d = w.done(6, 5);
  EXPECT_EQ(d.status, TaskStatus::kSucceeded);
  EXPECT_GE(d.time_finish - d.time_started, 0.25);
  stop_and_expect_clean_exit(w);
}

TEST(WorkerProcess, Spec7_6_CancelSentBeforeTheWorkerReadTheTaskStillCancelsIt) {
  WorkerProcess w(0, no_setup);
  expect_ready(w);
  w.cancel(9);  // main dispatched task 9 and cancelled it before the worker read it
  sleep_s(0.05);
  w.task(9, sleep_task(30));
  auto d = w.done(9, 5);
  EXPECT_EQ(d.status, TaskStatus::kCancelled);
  stop_and_expect_clean_exit(w);
}

TEST(WorkerProcess, Spec7_6_IdleCancelDoesNotLeakIntoTheNextTask) {
  WorkerProcess w(0, no_setup);
  expect_ready(w);
  ::kill(w.pid(), SIGUSR1);  // a plain kill while idle is ignored
  w.cancel(3);               // a queued cancel for another task too
  sleep_s(0.05);
  w.task(4, sleep_task(0.1));
  EXPECT_EQ(w.done(4, 5).status, TaskStatus::kSucceeded);
  stop_and_expect_clean_exit(w);
}

TEST(WorkerProcess, Spec7_8_SigintAndSigtermDoNotStopAWorker) {
  WorkerProcess w(0.05, no_setup);
  expect_ready(w);
  ::kill(w.pid(), SIGTERM);  // idle
  ::kill(w.pid(), SIGINT);
  sleep_s(0.1);
  w.task(1, sleep_task(0.3));
  sleep_s(0.1);
  ::kill(w.pid(), SIGTERM);  // busy
  ::kill(w.pid(), SIGINT);
  auto d = w.done(1, 5);
  EXPECT_EQ(d.status, TaskStatus::kSucceeded);
  stop_and_expect_clean_exit(w);
}

TEST(WorkerProcess, IgnoreCancelKeepsSleepingUntilSigkill) {
  WorkerProcess w(0, no_setup);
  expect_ready(w);
  w.task(2, sleep_task(30, /*ignore_cancel=*/true));
  sleep_s(0.05);
  w.cancel(2);
  EXPECT_FALSE(w.next(0.3).has_value());  // still sleeping
  ::kill(w.pid(), SIGKILL);
  int st = w.wait();
  ASSERT_TRUE(WIFSIGNALED(st));
  EXPECT_EQ(WTERMSIG(st), SIGKILL);
}

TEST(WorkerProcess, CrashTaskAbortsTheWorker) {
  WorkerProcess w(0, no_setup);
  expect_ready(w);
  w.task(1, {{"task", "dispatcherd.builtin.crash"}});
  EXPECT_FALSE(w.next(5).has_value());  // EOF, no done
  int st = w.wait();
  ASSERT_TRUE(WIFSIGNALED(st));
  EXPECT_EQ(WTERMSIG(st), SIGABRT);
}

TEST(WorkerProcess, ExitTaskExitsWithItsCode) {
  WorkerProcess w(0, no_setup);
  expect_ready(w);
  w.task(1, {{"task", "dispatcherd.builtin.exit"}, {"kwargs", {{"code", 7}}}});
  EXPECT_FALSE(w.next(5).has_value());
  int st = w.wait();
  ASSERT_TRUE(WIFEXITED(st));
  EXPECT_EQ(WEXITSTATUS(st), 7);
}

TEST(WorkerProcess, Spec7_7_OrphanedWorkerExits) {
  // An intermediate process plays main: it forks the worker, then dies. The worker, still
  // fed by our pipe (no EOF), must notice its new parent at the next idle check and leave.
  int to_worker[2], from_worker[2];
  ASSERT_EQ(::pipe2(to_worker, O_CLOEXEC), 0);
  ASSERT_EQ(::pipe2(from_worker, O_CLOEXEC), 0);
  pid_t middle = ::fork();
  if (middle == 0) {
    const pid_t self = ::getpid();  // read before forking: this process may be gone soon
    if (::fork() == 0) {
      ::close(to_worker[1]);
      ::close(from_worker[0]);
      log::set_level(log::Level::Critical);
      WorkerSettings s;
      s.worker_id = 1;
      s.idle_timeout = 0.05;
      s.main_pid = self;
      ::_exit(run_worker_loop(to_worker[0], from_worker[1], s));
    }
    ::_exit(0);
  }
  ::close(to_worker[0]);
  ::close(from_worker[1]);
  Fd in(to_worker[1]), out(from_worker[0]);
  ASSERT_EQ(::waitpid(middle, nullptr, 0), middle);
  // Ready, then EOF once the orphaned worker has exited.
  std::string got;
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  bool eof = false;
  while (Clock::now() < deadline) {
    pollfd p{out.get(), POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    char buf[256];
    ssize_t n = ::read(out.get(), buf, sizeof buf);
    if (n <= 0) {
      eof = true;
      break;
    }
    got.append(buf, static_cast<std::size_t>(n));
  }
  EXPECT_TRUE(eof) << "the orphaned worker did not exit";
  ipc::FrameReader r;
  r.feed(got.data(), got.size());
  auto f = r.next();
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->type, FrameType::kReady);
  EXPECT_FALSE(r.next().has_value());  // no shutdown: it was orphaned, not stopped
}

}  // namespace
}  // namespace dispatcherd
