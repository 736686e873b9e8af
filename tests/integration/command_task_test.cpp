// Command tasks (DESIGN §2) run by a real forked worker: argv from kwargs, the message on
// stdin, exit status, output tail, cwd/env, child hygiene (§3) and cancel/kill reaching the
// command's whole process group. The commands use sh for brevity; the worker never does.
// No Postgres needed.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "dispatcherd/config.h"
#include "dispatcherd/fd.h"
#include "dispatcherd/log.h"
#include "dispatcherd/pool/ipc.h"
#include "dispatcherd/worker/worker_loop.h"

namespace dispatcherd {
namespace {

using ipc::Frame;
using ipc::FrameType;
using ipc::TaskStatus;
using nlohmann::json;
using Clock = std::chrono::steady_clock;
using Commands = std::map<std::string, CommandTaskConfig>;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// A fresh directory, removed with its contents at the end of the test.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/command_task.XXXXXX";
    EXPECT_NE(::mkdtemp(tmpl), nullptr);
    path_ = tmpl;
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Waits for `path` to exist (commands write it with an atomic mv once complete).
bool wait_for_file(const std::string& path, double timeout = 5) {
  const auto t0 = Clock::now();
  while (seconds_since(t0) < timeout) {
    if (::access(path.c_str(), F_OK) == 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

// True while `pid` exists and is not a zombie (orphans may be reaped late by init).
bool alive(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  if (!std::getline(in, stat)) return false;
  auto p = stat.rfind(')');
  return p != std::string::npos && p + 2 < stat.size() && stat[p + 2] != 'Z' && stat[p + 2] != 'X';
}

bool all_gone(const std::vector<pid_t>& pids, double timeout = 3) {
  const auto t0 = Clock::now();
  while (seconds_since(t0) < timeout) {
    bool any = false;
    for (pid_t p : pids) any = any || alive(p);
    if (!any) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

// The two pids a "group" command writes: the sh and its background sleep.
std::vector<pid_t> read_pids(const std::string& path) {
  std::istringstream in(slurp(path));
  std::vector<pid_t> pids;
  for (pid_t p; in >> p;) pids.push_back(p);
  return pids;
}

// sh that records its pid and a background grandchild's, then waits; `prelude` runs first.
CommandTaskConfig group_command(const std::string& prelude = "") {
  CommandTaskConfig c;
  c.command = {"sh", "-c",
               prelude +
                   "echo $$ > \"$1.tmp\"; sleep 100 & echo $! >> \"$1.tmp\"; "
                   "mv \"$1.tmp\" \"$1\"; wait",
               "sh", "{path}"};
  return c;
}

// One forked worker running the real loop with `commands`, and the main side of its pipes.
class Worker {
 public:
  explicit Worker(const Commands& commands, double kill_grace = 5.0) {
    int to_worker[2], from_worker[2];
    EXPECT_EQ(::pipe2(to_worker, O_CLOEXEC), 0);
    EXPECT_EQ(::pipe2(from_worker, O_CLOEXEC), 0);
    const pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ == 0) {
      ::close(to_worker[1]);
      ::close(from_worker[0]);
      // DISPATCHERD_TEST_WORKER_DEBUG=1 shows the worker's debug log (command starts, tails).
      log::set_level(std::getenv("DISPATCHERD_TEST_WORKER_DEBUG") ? log::Level::Debug
                                                                  : log::Level::Critical);
      WorkerSettings s;
      s.worker_id = 1;
      s.main_pid = parent;
      s.command_tasks = &commands;
      s.command_kill_grace = kill_grace;
      ::_exit(run_worker_loop(to_worker[0], from_worker[1], s));
    }
    ::close(to_worker[0]);
    ::close(from_worker[1]);
    in_.reset(to_worker[1]);
    out_.reset(from_worker[0]);
    auto f = next(5);
    EXPECT_TRUE(f && f->type == FrameType::kReady);
  }
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;
  ~Worker() {
    if (pid_ > 0 && !reaped_) {
      in_.reset();  // EOF: a healthy worker leaves by itself
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  pid_t pid() const { return pid_; }

  void task(std::uint64_t seq, const json& body) {
    std::string buf;
    const std::string uuid = "u-" + std::to_string(seq);
    ipc::append_frame(buf, FrameType::kTask, seq, ipc::encode_task({uuid, "", body.dump()}));
    ASSERT_EQ(::write(in_.get(), buf.data(), buf.size()), static_cast<ssize_t>(buf.size()));
  }
  void cancel(std::uint64_t seq) {
    sigval v{};
    v.sival_int = cancel_signal_value(seq);
    ASSERT_EQ(::sigqueue(pid_, SIGUSR1, v), 0);
  }
  std::optional<Frame> next(double timeout) {
    const auto t0 = Clock::now();
    for (;;) {
      if (auto f = reader_.next()) return f;
      const int left = static_cast<int>((timeout - seconds_since(t0)) * 1000);
      if (left <= 0) return std::nullopt;
      pollfd p{out_.get(), POLLIN, 0};
      if (::poll(&p, 1, left) <= 0) continue;
      char buf[65536];
      ssize_t n = ::read(out_.get(), buf, sizeof buf);
      if (n <= 0) return std::nullopt;
      reader_.feed(buf, static_cast<std::size_t>(n));
    }
  }
  ipc::DonePayload done(std::uint64_t seq, double timeout = 10) {
    auto f = next(timeout);
    EXPECT_TRUE(f.has_value()) << "no done within " << timeout << " s";
    if (!f) return {};
    EXPECT_EQ(f->type, FrameType::kDone);
    EXPECT_EQ(f->seq, seq);
    return ipc::decode_done(f->payload).value_or(ipc::DonePayload{});
  }
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

json command_message(const std::string& task, const json& kwargs) {
  return {{"task", task}, {"kwargs", kwargs}};
}

TEST(CommandTask, Design2_ReceivesKwargsAsArgvAndTheMessageOnStdin) {
  TempDir dir;
  CommandTaskConfig c;
  // `sh` by bare name: found on PATH (execvp semantics).
  c.command = {"sh", "-c", "cat > \"$1.in\"; printf %s \"$2\" > \"$1\"", "sh", "{path}", "{wiki}"};
  Commands commands{{"t.cmd", c}};
  Worker w(commands);
  const std::string wiki = "en wiki; $(id) `id` 'q' \"dq\"";
  const json body = command_message("t.cmd", {{"path", dir.file("out")}, {"wiki", wiki}});
  w.task(1, body);
  auto d = w.done(1);
  EXPECT_EQ(d.status, TaskStatus::kSucceeded) << d.error;
  EXPECT_EQ(json::parse(d.result), (json{{"exit_code", 0}}));
  EXPECT_EQ(slurp(dir.file("out")), wiki);  // one argument, verbatim, no shell expansion
  json expected = body;
  expected["uuid"] = "u-1";
  EXPECT_EQ(json::parse(slurp(dir.file("out.in"))), expected);
}

TEST(CommandTask, Design2_NonZeroExitFailsWithTheOutputTail) {
  CommandTaskConfig c;
  c.command = {"sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3"};
  CommandTaskConfig tail = c;
  tail.command = {"sh", "-c", "printf 0123456789abcdef; exit 1"};
  tail.output_tail_bytes = 8;
  Commands commands{{"t.fail", c}, {"t.tail", tail}};
  Worker w(commands);
  w.task(1, command_message("t.fail", json::object()));
  auto d = w.done(1);
  EXPECT_EQ(d.status, TaskStatus::kFailed);
  EXPECT_EQ(d.error.rfind("command exited with status 3; output tail: ", 0), 0u) << d.error;
  EXPECT_NE(d.error.find("to-stdout"), std::string::npos) << d.error;
  EXPECT_NE(d.error.find("to-stderr"), std::string::npos) << d.error;
  w.task(2, command_message("t.tail", json::object()));
  d = w.done(2);
  EXPECT_EQ(d.status, TaskStatus::kFailed);
  EXPECT_EQ(d.error, "command exited with status 1; output tail: 89abcdef");
}

TEST(CommandTask, Design3_SigtermIsNotIgnoredInTheCommand) {
  // The worker ignores SIGTERM; the command must not inherit that.
  CommandTaskConfig c;
  c.command = {"sh", "-c", "kill -TERM $$; sleep 5"};
  Commands commands{{"t.term", c}};
  Worker w(commands);
  w.task(1, command_message("t.term", json::object()));
  auto d = w.done(1);
  EXPECT_EQ(d.status, TaskStatus::kFailed);
  EXPECT_EQ(d.error, "command killed by signal 15");
}

TEST(CommandTask, Design2_StartFailuresAreReportedWithStatus127) {
  CommandTaskConfig missing;
  missing.command = {"/nonexistent/program", "x"};
  CommandTaskConfig bad_cwd;
  bad_cwd.command = {"true"};
  bad_cwd.cwd = "/nonexistent/dir";
  Commands commands{{"t.missing", missing}, {"t.cwd", bad_cwd}};
  Worker w(commands);
  w.task(1, command_message("t.missing", json::object()));
  auto d = w.done(1);
  EXPECT_EQ(d.status, TaskStatus::kFailed);
  EXPECT_NE(d.error.find("status 127"), std::string::npos) << d.error;
  EXPECT_NE(d.error.find("cannot execute '/nonexistent/program'"), std::string::npos) << d.error;
  w.task(2, command_message("t.cwd", json::object()));
  d = w.done(2);
  EXPECT_NE(d.error.find("cannot change directory to '/nonexistent/dir'"), std::string::npos)
      << d.error;
}

TEST(CommandTask, Design2_BadKwargsFailWithoutRunningAnything) {
  TempDir dir;
  CommandTaskConfig c;
  c.command = {"touch", "{path}", "{wiki}"};
  c.patterns = {{"wiki", "^[a-z]+$"}};
  Commands commands{{"t.touch", c}};
  Worker w(commands);
  w.task(1, command_message("t.touch", {{"path", dir.file("ran")}, {"wiki", "x y"}}));
  auto d = w.done(1);
  EXPECT_EQ(d.status, TaskStatus::kFailed);
  EXPECT_EQ(d.error, "kwarg 'wiki' value 'x y' does not match pattern '^[a-z]+$'");
  w.task(2, command_message("t.touch", {{"path", dir.file("ran")}}));
  d = w.done(2);
  EXPECT_NE(d.error.find("missing kwarg 'wiki'"), std::string::npos) << d.error;
  EXPECT_NE(::access(dir.file("ran").c_str(), F_OK), 0);
}

TEST(CommandTask, Design2_CwdAndEnvAreApplied) {
  TempDir dir, work;
  ::setenv("DISPATCHERD_TEST_INHERITED", "inherited", 1);
  ::setenv("DISPATCHERD_TEST_OVERRIDDEN", "old", 1);
  CommandTaskConfig c;
  c.command = {"sh", "-c",
               "pwd -P > \"$1\"; printf '%s|%s|%s' \"$DISPATCHERD_TEST_INHERITED\" "
               "\"$DISPATCHERD_TEST_OVERRIDDEN\" \"$DISPATCHERD_TEST_ADDED\" >> \"$1\"",
               "sh", "{path}"};
  c.cwd = work.path();
  c.env = {{"DISPATCHERD_TEST_OVERRIDDEN", "new"}, {"DISPATCHERD_TEST_ADDED", "a b=c"}};
  Commands commands{{"t.env", c}};
  Worker w(commands);
  ::unsetenv("DISPATCHERD_TEST_INHERITED");
  ::unsetenv("DISPATCHERD_TEST_OVERRIDDEN");
  w.task(1, command_message("t.env", {{"path", dir.file("out")}}));
  EXPECT_EQ(w.done(1).status, TaskStatus::kSucceeded);
  const std::string real = std::filesystem::canonical(work.path()).string();
  EXPECT_EQ(slurp(dir.file("out")), real + "\ninherited|new|a b=c");
}

TEST(CommandTask, Design3_ChildHygieneSignalsFdsAndProcessGroup) {
  TempDir dir;
  CommandTaskConfig c;
  // cat and ls are exec'd by sh; sh itself changes no dispositions when non-interactive.
  c.command = {"sh", "-c",
               "grep -E '^Sig(Blk|Ign)' /proc/self/status > \"$1.sig\"; "
               "ls /proc/self/fd | tr '\\n' ' ' > \"$1.fd\"; "
               "cut -d' ' -f4,5 /proc/$$/stat > \"$1.pg\"",
               "sh", "{path}"};
  Commands commands{{"t.hyg", c}};
  Worker w(commands);
  w.task(1, command_message("t.hyg", {{"path", dir.file("o")}}));
  EXPECT_EQ(w.done(1).status, TaskStatus::kSucceeded);
  EXPECT_EQ(slurp(dir.file("o.sig")), "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");
  EXPECT_EQ(slurp(dir.file("o.fd")), "0 1 2 3 ");  // 3: ls's own directory fd
  std::istringstream pg(slurp(dir.file("o.pg")));
  pid_t ppid = 0, pgid = 0;
  pg >> ppid >> pgid;
  EXPECT_EQ(ppid, pgid) << "the command's parent leads its own process group";
  EXPECT_NE(pgid, ::getpgrp());
  EXPECT_NE(pgid, w.pid());
}

TEST(CommandTask, Design3_CancelKillsTheWholeProcessGroup) {
  TempDir dir;
  Commands commands{{"t.group", group_command()}};
  Worker w(commands);
  w.task(4, command_message("t.group", {{"path", dir.file("pids")}}));
  ASSERT_TRUE(wait_for_file(dir.file("pids")));
  auto pids = read_pids(dir.file("pids"));
  ASSERT_EQ(pids.size(), 2u);
  EXPECT_TRUE(alive(pids[0]) && alive(pids[1]));
  const auto t0 = Clock::now();
  w.cancel(4);
  auto d = w.done(4);
  EXPECT_EQ(d.status, TaskStatus::kCancelled);
  EXPECT_LT(seconds_since(t0), 1.0);  // SIGTERM suffices: no grace period spent
  EXPECT_TRUE(all_gone(pids));
  // The worker carries on.
  w.task(5, {{"task", "dispatcherd.builtin.noop"}});
  EXPECT_EQ(w.done(5).status, TaskStatus::kSucceeded);
}

TEST(CommandTask, Design3_ACancelRightAfterTheStartIsNeverLost) {
  // A SIGTERM sent before the command exists, or before it reset the worker's ignored
  // dispositions, must still stop it: with a 60 s grace, a lost one shows as a timeout.
  CommandTaskConfig c;
  c.command = {"sleep", "100"};
  Commands commands{{"t.sleep", c}};
  Worker w(commands, /*kill_grace=*/60);
  const int delays_us[] = {0, 200, 500, 1000, 2000, 3000, 5000, 10000, 20000, 50000};
  std::uint64_t seq = 0;
  for (int delay : delays_us) {
    ++seq;
    w.task(seq, command_message("t.sleep", json::object()));
    std::this_thread::sleep_for(std::chrono::microseconds(delay));
    w.cancel(seq);
    EXPECT_EQ(w.done(seq, 5).status, TaskStatus::kCancelled) << "delay " << delay << " us";
  }
}

TEST(CommandTask, Design3_SigtermIgnoredByTheCommandEscalatesToSigkillAfterTheGrace) {
  TempDir dir;
  Commands commands{{"t.stubborn", group_command("trap '' TERM; ")}};
  Worker w(commands, /*kill_grace=*/0.3);
  w.task(1, command_message("t.stubborn", {{"path", dir.file("pids")}}));
  ASSERT_TRUE(wait_for_file(dir.file("pids")));
  auto pids = read_pids(dir.file("pids"));
  ASSERT_EQ(pids.size(), 2u);
  const auto t0 = Clock::now();
  w.cancel(1);
  auto d = w.done(1);
  EXPECT_EQ(d.status, TaskStatus::kCancelled);
  EXPECT_GE(seconds_since(t0), 0.25);
  EXPECT_LT(seconds_since(t0), 2.0);
  EXPECT_TRUE(all_gone(pids));
}

TEST(CommandTask, Design3_ASecondCancelSignalKillsAtOnce) {
  TempDir dir;
  Commands commands{{"t.stubborn", group_command("trap '' TERM; ")}};
  Worker w(commands, /*kill_grace=*/60);
  w.task(1, command_message("t.stubborn", {{"path", dir.file("pids")}}));
  ASSERT_TRUE(wait_for_file(dir.file("pids")));
  auto pids = read_pids(dir.file("pids"));
  w.cancel(1);
  EXPECT_FALSE(w.next(0.3).has_value());  // SIGTERM ignored: still running
  w.cancel(1);
  auto d = w.done(1, 2);
  EXPECT_EQ(d.status, TaskStatus::kCancelled);
  EXPECT_TRUE(all_gone(pids));
}

TEST(CommandTask, Design3_SigkilledWorkerTakesTheCommandGroupWithIt) {
  // What main's cancel_grace escalation does: PDEATHSIG alone would spare the grandchild.
  TempDir dir;
  Commands commands{{"t.group", group_command("trap '' TERM; ")}};
  Worker w(commands);
  w.task(1, command_message("t.group", {{"path", dir.file("pids")}}));
  ASSERT_TRUE(wait_for_file(dir.file("pids")));
  auto pids = read_pids(dir.file("pids"));
  ASSERT_EQ(pids.size(), 2u);
  ::kill(w.pid(), SIGKILL);
  int st = w.wait();
  EXPECT_TRUE(WIFSIGNALED(st));
  EXPECT_TRUE(all_gone(pids));
}

TEST(CommandTask, Design3_BackgroundJobsLeftBehindAreKilledWhenTheCommandExits) {
  TempDir dir;
  CommandTaskConfig c;
  c.command = {"sh", "-c", "sleep 100 & echo $! > \"$1\"", "sh", "{path}"};
  Commands commands{{"t.bg", c}};
  Worker w(commands);
  w.task(1, command_message("t.bg", {{"path", dir.file("pid")}}));
  auto d = w.done(1);
  EXPECT_EQ(d.status, TaskStatus::kSucceeded) << d.error;  // not held up by the sleep's stdout
  EXPECT_TRUE(all_gone(read_pids(dir.file("pid"))));
}

TEST(CommandTask, Design2_LargeMessageDoesNotHangTheWorker) {
  TempDir dir;
  CommandTaskConfig ignores;
  ignores.command = {"sh", "-c", "sleep 0.2; echo done"};
  CommandTaskConfig reads;
  reads.command = {"sh", "-c", "cat > \"$1\"", "sh", "{path}"};
  CommandTaskConfig sleeps;
  sleeps.command = {"sleep", "100"};
  Commands commands{{"t.ignores", ignores}, {"t.reads", reads}, {"t.sleeps", sleeps}};
  Worker w(commands);
  const std::string blob(1 << 20, 'x');
  w.task(1, command_message("t.ignores", {{"blob", blob}}));
  EXPECT_EQ(w.done(1).status, TaskStatus::kSucceeded);
  const json body = command_message("t.reads", {{"blob", blob}, {"path", dir.file("in")}});
  w.task(2, body);
  EXPECT_EQ(w.done(2).status, TaskStatus::kSucceeded);
  json expected = body;
  expected["uuid"] = "u-2";
  EXPECT_EQ(json::parse(slurp(dir.file("in"))), expected);
  // Blocked on a full stdin pipe is no reason to miss a cancel.
  w.task(3, command_message("t.sleeps", {{"blob", blob}}));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  w.cancel(3);
  EXPECT_EQ(w.done(3, 2).status, TaskStatus::kCancelled);
}

TEST(CommandTask, RegisteredTaskWinsOverACommandTaskOfTheSameName) {
  CommandTaskConfig c;
  c.command = {"false"};
  Commands commands{{"dispatcherd.builtin.noop", c}};
  Worker w(commands);
  w.task(1, {{"task", "dispatcherd.builtin.noop"}});
  EXPECT_EQ(w.done(1).status, TaskStatus::kSucceeded);
}

}  // namespace
}  // namespace dispatcherd
