// The worker side of the main ⇄ worker protocol, run in the test process without fork: the
// input frames are pre-written into a pipe, run_worker_loop() runs them and returns at kStop
// (or EOF), and the frames it wrote are decoded afterwards.
#include "dispatcherd/worker/worker_loop.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "dispatcherd/fd.h"
#include "dispatcherd/log.h"
#include "dispatcherd/pool/ipc.h"
#include "dispatcherd/task.h"
#include "dispatcherd/worker/builtin_tasks.h"

namespace dispatcherd {
namespace {

using ipc::FrameType;
using ipc::TaskStatus;
using nlohmann::json;

// ---- tasks used only by these tests ----

// Cancels itself the way main does (a queued SIGUSR1 carrying kwargs.seq), then sleeps.
json wl_self_cancel(TaskContext& ctx) {
  sigval v{};
  v.sival_int = cancel_signal_value(ctx.kwargs().at("seq").get<std::uint64_t>());
  ::sigqueue(::getpid(), SIGUSR1, v);
  worker::cancellable_sleep(ctx, ctx.kwargs().value("seconds", 5.0));
  return "slept";
}
// A plain `kill -USR1`, then sleep.
json wl_self_kill(TaskContext& ctx) {
  ::kill(::getpid(), SIGUSR1);
  worker::cancellable_sleep(ctx, 5);
  return "slept";
}
json wl_message(TaskContext& ctx) {
  return ctx.message();
}
json wl_received_at(TaskContext& ctx) {
  return ctx.received_at();
}
json wl_control(TaskContext& ctx) {
  return ctx.control("running", {{"task", "x"}});
}
json wl_throw_int(TaskContext&) {
  throw 42;
}
json wl_bad_utf8(TaskContext&) {
  return std::string(
      "a\xff"
      "b");
}
json wl_dispositions(TaskContext&) {
  struct sigaction sa {};
  json out;
  ::sigaction(SIGINT, nullptr, &sa);
  out["int_ignored"] = sa.sa_handler == SIG_IGN;
  ::sigaction(SIGTERM, nullptr, &sa);
  out["term_ignored"] = sa.sa_handler == SIG_IGN;
  ::sigaction(SIGUSR1, nullptr, &sa);
  out["usr1_siginfo"] = (sa.sa_flags & SA_SIGINFO) != 0;
  out["usr1_restart"] = (sa.sa_flags & SA_RESTART) != 0;
  return out;
}
DISPATCHERD_TASK("tests.wl.self_cancel", wl_self_cancel);
DISPATCHERD_TASK("tests.wl.self_kill", wl_self_kill);
DISPATCHERD_TASK("tests.wl.message", wl_message);
DISPATCHERD_TASK("tests.wl.control", wl_control);
DISPATCHERD_TASK("tests.wl.received_at", wl_received_at);
DISPATCHERD_TASK("tests.wl.throw_int", wl_throw_int);
DISPATCHERD_TASK("tests.wl.bad_utf8", wl_bad_utf8);
DISPATCHERD_TASK("tests.wl.dispositions", wl_dispositions);

struct Out {
  FrameType type;
  std::uint64_t seq;
  std::string payload;
  ipc::DonePayload done;  // decoded when type == kDone
};

class WorkerLoop : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int s : kSignals) ::sigaction(s, nullptr, &saved_[s]);
    ::sigprocmask(SIG_SETMASK, nullptr, &saved_mask_);
    int p[2];
    ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
    in_r_.reset(p[0]);
    in_w_.reset(p[1]);
    ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
    out_r_.reset(p[0]);
    out_w_.reset(p[1]);
    // Everything is pre-written and read back afterwards: the pipes must hold it all.
    ::fcntl(in_w_.get(), F_SETPIPE_SZ, 1 << 20);
    ::fcntl(out_w_.get(), F_SETPIPE_SZ, 1 << 20);
    set_nonblocking(out_r_.get());
    log::set_level(log::Level::Critical);  // failing tasks log errors by design
    char tmpl[] = "/tmp/worker_loop_test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    for (int s : kSignals) ::sigaction(s, &saved_[s], nullptr);
    ::sigprocmask(SIG_SETMASK, &saved_mask_, nullptr);
    set_worker_hooks({});
    log::set_level(log::Level::Info);
    log::set_process_name("main");
    for (const auto& f : files_) std::remove(f.c_str());
    ::rmdir(dir_.c_str());
  }

  void write_frame(FrameType t, std::uint64_t seq, std::string_view payload) {
    std::string buf;
    ipc::append_frame(buf, t, seq, payload);
    ASSERT_EQ(::write(in_w_.get(), buf.data(), buf.size()), static_cast<ssize_t>(buf.size()));
  }
  void task(std::uint64_t seq, const json& body, std::string channel = "") {
    task_text(seq, body.dump(), std::move(channel));
  }
  void task_text(std::uint64_t seq, const std::string& body, std::string channel = "",
                 double received_at = 0) {
    const std::string uuid = "u-" + std::to_string(seq);
    write_frame(FrameType::kTask, seq, ipc::encode_task({uuid, channel, body, received_at}));
  }
  void stop() { write_frame(FrameType::kStop, 0, ""); }

  int run(pid_t main_pid = ::getppid()) {
    WorkerSettings s;
    s.worker_id = 3;
    s.main_pid = main_pid;
    return run_worker_loop(in_r_.get(), out_w_.get(), s);
  }

  std::vector<Out> output() {
    std::string bytes;
    char buf[65536];
    ssize_t n;
    while ((n = ::read(out_r_.get(), buf, sizeof buf)) > 0)
      bytes.append(buf, static_cast<std::size_t>(n));
    ipc::FrameReader r;
    r.feed(bytes.data(), bytes.size());
    std::vector<Out> out;
    while (auto f = r.next()) {
      Out o{f->type, f->seq, f->payload, {}};
      if (f->type == FrameType::kDone) {
        auto d = ipc::decode_done(f->payload);
        EXPECT_TRUE(d.has_value());
        if (d) o.done = *d;
      }
      out.push_back(std::move(o));
    }
    EXPECT_FALSE(r.corrupt());
    EXPECT_EQ(r.buffered(), 0u);
    return out;
  }

  // Runs one task body to kStop and returns its done event.
  ipc::DonePayload run_one(const json& body) {
    task(1, body);
    stop();
    EXPECT_EQ(run(), 0);
    auto out = output();
    EXPECT_EQ(out.size(), 3u);
    if (out.size() != 3u || out[1].type != FrameType::kDone) return {};
    return out[1].done;
  }

  std::string temp_file(const std::string& name) {
    files_.push_back(dir_ + "/" + name);
    return files_.back();
  }
  static std::vector<std::string> lines(const std::string& path) {
    std::ifstream f(path);
    std::vector<std::string> out;
    for (std::string l; std::getline(f, l);) out.push_back(l);
    return out;
  }
  static json record(const std::string& path) {
    return {{"task", "dispatcherd.builtin.record"}, {"kwargs", {{"path", path}}}};
  }

  static constexpr int kSignals[] = {SIGINT, SIGTERM, SIGPIPE, SIGUSR1};
  struct sigaction saved_[NSIG] {};
  sigset_t saved_mask_{};
  Fd in_r_, in_w_, out_r_, out_w_;
  std::string dir_;
  std::vector<std::string> files_;
};

TEST_F(WorkerLoop, Spec7_5_ReadyThenDonesThenShutdownWithSeqEchoed) {
  task(5, {{"task", "dispatcherd.builtin.noop"}});
  task(6, {{"task", "dispatcherd.builtin.noop"}});
  stop();
  EXPECT_EQ(run(), 0);
  auto out = output();
  ASSERT_EQ(out.size(), 4u);
  EXPECT_EQ(out[0].type, FrameType::kReady);
  EXPECT_EQ(out[1].type, FrameType::kDone);
  EXPECT_EQ(out[1].seq, 5u);
  EXPECT_EQ(out[2].type, FrameType::kDone);
  EXPECT_EQ(out[2].seq, 6u);
  EXPECT_EQ(out[3].type, FrameType::kShutdown);
  const auto& d = out[1].done;
  EXPECT_EQ(d.status, TaskStatus::kSucceeded);
  EXPECT_EQ(d.result, "null");
  EXPECT_FALSE(d.is_stopping);
  EXPECT_GT(d.time_started, 1.6e9);
  EXPECT_LE(d.time_started, d.time_finish);
}

TEST_F(WorkerLoop, EchoReturnsItsArgsAndKwargs) {
  auto d = run_one({{"task", "dispatcherd.builtin.echo"},
                    {"args", {1, "two"}},
                    {"kwargs", {{"k", {{"n", nullptr}}}}}});
  EXPECT_EQ(d.status, TaskStatus::kSucceeded);
  EXPECT_EQ(json::parse(d.result),
            json({{"args", {1, "two"}}, {"kwargs", {{"k", {{"n", nullptr}}}}}}));
}

TEST_F(WorkerLoop, MessageLargerThanTheReadBufferRuns) {
  std::string big(300000, 'x');
  auto d = run_one({{"task", "dispatcherd.builtin.echo"}, {"args", {big}}});
  EXPECT_EQ(d.status, TaskStatus::kSucceeded);
  EXPECT_EQ(json::parse(d.result)["args"][0], big);
}

TEST_F(WorkerLoop, Spec2_ThrowingTaskIsFailedWithItsMessage) {
  auto d = run_one({{"task", "dispatcherd.builtin.fail"}, {"kwargs", {{"message", "boom"}}}});
  EXPECT_EQ(d.status, TaskStatus::kFailed);
  EXPECT_EQ(d.error, "boom");
  EXPECT_EQ(d.result, "null");
}

TEST_F(WorkerLoop, NonStandardExceptionIsAFailure) {
  auto d = run_one({{"task", "tests.wl.throw_int"}});
  EXPECT_EQ(d.status, TaskStatus::kFailed);
  EXPECT_FALSE(d.error.empty());
}

TEST_F(WorkerLoop, Spec2_UnknownTaskFails) {
  auto d = run_one({{"task", "lambda: 1"}});
  EXPECT_EQ(d.status, TaskStatus::kFailed);
  EXPECT_EQ(d.error, "unknown task 'lambda: 1'");
}

TEST_F(WorkerLoop, Spec7_10_MessageWithoutTaskFails) {
  auto d = run_one({{"uuid", "x"}});
  EXPECT_EQ(d.status, TaskStatus::kFailed);
  EXPECT_NE(d.error.find("no 'task'"), std::string::npos) << d.error;
}

TEST_F(WorkerLoop, Spec2_2_ArgsMustBeAnArrayAndKwargsAnObject) {
  task(1, {{"task", "dispatcherd.builtin.noop"}, {"args", "x"}});
  task(2, {{"task", "dispatcherd.builtin.noop"}, {"kwargs", json::array()}});
  task_text(3, "[1,2]");
  stop();
  EXPECT_EQ(run(), 0);
  auto out = output();
  ASSERT_EQ(out.size(), 5u);
  EXPECT_EQ(out[1].done.status, TaskStatus::kFailed);
  EXPECT_EQ(out[1].done.error, "field 'args' must be an array, got string");
  EXPECT_EQ(out[2].done.status, TaskStatus::kFailed);
  EXPECT_EQ(out[2].done.error, "field 'kwargs' must be an object, got array");
  EXPECT_EQ(out[3].done.status, TaskStatus::kFailed);
}

TEST_F(WorkerLoop, Spec2_1_BareTextBodyIsATaskName) {
  task_text(1, "dispatcherd.builtin.noop");
  stop();
  EXPECT_EQ(run(), 0);
  auto out = output();
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[1].done.status, TaskStatus::kSucceeded);
}

TEST_F(WorkerLoop, Spec2_3_UuidAndChannelFromTheFrameAreSetInTheMessage) {
  task(7, {{"task", "tests.wl.message"}, {"uuid", "old"}, {"channel", "old"}}, "chan_a");
  stop();
  EXPECT_EQ(run(), 0);
  auto out = output();
  ASSERT_EQ(out.size(), 3u);
  json m = json::parse(out[1].done.result);
  EXPECT_EQ(m["uuid"], "u-7");
  EXPECT_EQ(m["channel"], "chan_a");
}

TEST_F(WorkerLoop, Design10_TaskSeesWhenMainReadItsMessage) {
  // Both the scanned path and the parsed one (which callbacks take) pass it on.
  task_text(1, R"({"task":"tests.wl.received_at"})", "", 12345.25);
  task_text(2, R"({"task":"tests.wl.received_at","callbacks":[]})", "", 0.5);
  stop();
  EXPECT_EQ(run(), 0);
  auto out = output();
  ASSERT_EQ(out.size(), 4u);
  EXPECT_EQ(json::parse(out[1].done.result), 12345.25);
  EXPECT_EQ(json::parse(out[2].done.result), 0.5);
}

TEST_F(WorkerLoop, InvalidUtf8InAResultIsReplacedNotThrown) {
  auto d = run_one({{"task", "tests.wl.bad_utf8"}});
  EXPECT_EQ(d.status, TaskStatus::kSucceeded);
  EXPECT_EQ(json::parse(d.result),
            "a\xef\xbf\xbd"
            "b");
}

TEST_F(WorkerLoop, RecordWritesExactlyOneLinePerTask) {
  const std::string path = temp_file("rec");
  for (std::uint64_t s = 1; s <= 3; ++s) task(s, record(path));
  stop();
  EXPECT_EQ(run(), 0);
  EXPECT_EQ(lines(path), (std::vector<std::string>{"u-1", "u-2", "u-3"}));
}

TEST_F(WorkerLoop, Spec7_10_ErrbacksRunOnlyOnFailure) {
  const std::string errs = temp_file("errbacks");
  task(1, {{"task", "dispatcherd.builtin.noop"}, {"errbacks", {record(errs)}}});
  task(2, {{"task", "dispatcherd.builtin.fail"}, {"errbacks", {record(errs), record(errs)}}});
  stop();
  EXPECT_EQ(run(), 0);
  EXPECT_EQ(lines(errs), (std::vector<std::string>{"u-2", "u-2"}));
  auto out = output();
  ASSERT_EQ(out.size(), 4u);
  EXPECT_EQ(out[2].done.status, TaskStatus::kFailed);  // an errback does not rescue the task
}

TEST_F(WorkerLoop, Spec7_10_CallbacksRunAlwaysAfterErrbacksWithTheParentUuid) {
  const std::string log = temp_file("order");
  json cb = record(log);
  cb["uuid"] = "callback-own-uuid";  // overwritten by the parent's
  json eb = {{"task", "dispatcherd.builtin.echo"}};
  task(1, {{"task", "dispatcherd.builtin.noop"}, {"callbacks", {cb}}});
  task(2, {{"task", "dispatcherd.builtin.fail"}, {"callbacks", {cb}}, {"errbacks", {record(log)}}});
  stop();
  EXPECT_EQ(run(), 0);
  // Task 2: the errback's line comes before the callback's.
  EXPECT_EQ(lines(log), (std::vector<std::string>{"u-1", "u-2", "u-2"}));
}

TEST_F(WorkerLoop, Spec7_10_FailingCallbackDoesNotChangeTheOutcome) {
  const std::string log = temp_file("cb");
  task(1,
       {{"task", "dispatcherd.builtin.echo"},
        {"callbacks", {{{"task", "dispatcherd.builtin.fail"}}, {{"task", "nope"}}, record(log)}}});
  stop();
  EXPECT_EQ(run(), 0);
  auto out = output();
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[1].done.status, TaskStatus::kSucceeded);
  EXPECT_EQ(lines(log), (std::vector<std::string>{"u-1"}));  // later callbacks still run
}

TEST_F(WorkerLoop, Spec3_1_6_SelfCheckMessageSucceedsWithTheBrokerId) {
  task_text(1, R"({"task":"lambda: \"broker_x\"","self_check":true})");
  stop();
  EXPECT_EQ(run(), 0);
  auto out = output();
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[1].done.status, TaskStatus::kSucceeded);
  EXPECT_EQ(out[1].done.result, R"("broker_x")");
}

TEST(WorkerCancel, Spec7_6_QueuedCancelMatchesOnlyTheCurrentTask) {
  EXPECT_TRUE(cancel_matches(SI_QUEUE, 5, 5));
  EXPECT_FALSE(cancel_matches(SI_QUEUE, 4, 5));  // a late cancel for the previous task
  // Only the low 31 bits travel in sival_int.
  const std::uint64_t big = (std::uint64_t{1} << 40) + 9;
  EXPECT_TRUE(cancel_matches(SI_QUEUE, cancel_signal_value(big), big));
  EXPECT_EQ(cancel_signal_value(big), 9);
  EXPECT_EQ(cancel_signal_value(0x80000001u), 1);
}

TEST(WorkerCancel, Spec7_6_PlainKillCancelsWhateverRuns) {
  EXPECT_TRUE(cancel_matches(SI_USER, 0, 5));
  EXPECT_TRUE(cancel_matches(SI_TKILL, 123, 5));
}

TEST_F(WorkerLoop, Spec7_6_QueuedCancelWithTheCurrentSeqCancelsTheTask) {
  const std::uint64_t seq = (std::uint64_t{1} << 33) + 77;  // exercises the 31-bit truncation
  task(seq, {{"task", "tests.wl.self_cancel"}, {"kwargs", {{"seq", seq}}}});
  stop();
  EXPECT_EQ(run(), 0);
  auto out = output();
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[1].seq, seq);
  EXPECT_EQ(out[1].done.status, TaskStatus::kCancelled);
  EXPECT_LT(out[1].done.time_finish - out[1].done.time_started, 2.0);
}

TEST_F(WorkerLoop, Spec7_6_LateCancelForAnEarlierTaskIsIgnored) {
  task(8, {{"task", "tests.wl.self_cancel"}, {"kwargs", {{"seq", 7}, {"seconds", 0.05}}}});
  stop();
  EXPECT_EQ(run(), 0);
  auto out = output();
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[1].done.status, TaskStatus::kSucceeded);
  EXPECT_EQ(out[1].done.result, R"("slept")");
}

TEST_F(WorkerLoop, Spec7_6_PlainKillUsr1CancelsTheRunningTask) {
  auto d = run_one({{"task", "tests.wl.self_kill"}});
  EXPECT_EQ(d.status, TaskStatus::kCancelled);
}

TEST_F(WorkerLoop, CancelFlagIsClearedAtEachTaskStart) {
  task(1, {{"task", "tests.wl.self_kill"}});
  task(2, {{"task", "dispatcherd.builtin.sleep"}, {"args", {0.01}}});
  stop();
  EXPECT_EQ(run(), 0);
  auto out = output();
  ASSERT_EQ(out.size(), 4u);
  EXPECT_EQ(out[1].done.status, TaskStatus::kCancelled);
  EXPECT_EQ(out[2].done.status, TaskStatus::kSucceeded);
}

TEST_F(WorkerLoop, CancelSkipsTheRemainingCallbacks) {
  const std::string log = temp_file("cancelled_cb");
  task(1,
       {{"task", "tests.wl.self_cancel"}, {"kwargs", {{"seq", 1}}}, {"callbacks", {record(log)}}});
  stop();
  EXPECT_EQ(run(), 0);
  EXPECT_TRUE(lines(log).empty());
}

TEST_F(WorkerLoop, SleepRejectsBadSeconds) {
  task(1, {{"task", "dispatcherd.builtin.sleep"}, {"args", {-1}}});
  task(2, {{"task", "dispatcherd.builtin.sleep"}, {"kwargs", {{"seconds", "1"}}}});
  task(3, {{"task", "dispatcherd.builtin.sleep"}});
  task(4, {{"task", "dispatcherd.builtin.sleep"}, {"kwargs", {{"seconds", 0}}}});
  stop();
  EXPECT_EQ(run(), 0);
  auto out = output();
  ASSERT_EQ(out.size(), 6u);
  for (int i = 1; i <= 3; ++i) {
    EXPECT_EQ(out[i].done.status, TaskStatus::kFailed);
    EXPECT_NE(out[i].done.error.find("seconds"), std::string::npos) << out[i].done.error;
  }
  EXPECT_EQ(out[4].done.status, TaskStatus::kSucceeded);
}

TEST_F(WorkerLoop, Spec7_8_WorkerIgnoresSigintSigtermAndCancelsWithoutSaRestart) {
  auto d = run_one({{"task", "tests.wl.dispositions"}});
  EXPECT_EQ(json::parse(d.result), json({{"int_ignored", true},
                                         {"term_ignored", true},
                                         {"usr1_siginfo", true},
                                         {"usr1_restart", false}}));
}

TEST_F(WorkerLoop, Spec7_10_WorkerHooksFireInOrder) {
  std::vector<std::string> seen;
  WorkerHooks h;
  h.on_start = [&](int id) { seen.push_back("start " + std::to_string(id)); };
  h.before_task = [&](const json& m) { seen.push_back("before " + m["uuid"].get<std::string>()); };
  h.after_task = [&](const json& m, const json& r) {
    seen.push_back("after " + m["uuid"].get<std::string>() + " " + r.dump());
  };
  h.on_shutdown = [&] { seen.push_back("shutdown"); };
  set_worker_hooks(h);
  task(1, {{"task", "dispatcherd.builtin.echo"}, {"args", {1}}});
  stop();
  EXPECT_EQ(run(), 0);
  EXPECT_EQ(seen, (std::vector<std::string>{"start 3", "before u-1",
                                            R"(after u-1 {"args":[1],"kwargs":{}})", "shutdown"}));
}

TEST_F(WorkerLoop, HookExceptionsAreLoggedAndIgnored) {
  WorkerHooks h;
  h.on_start = [](int) { throw std::runtime_error("x"); };
  h.before_task = [](const json&) { throw std::runtime_error("x"); };
  h.after_task = [](const json&, const json&) { throw 1; };
  h.on_shutdown = [] { throw std::runtime_error("x"); };
  set_worker_hooks(h);
  auto d = run_one({{"task", "dispatcherd.builtin.noop"}});
  EXPECT_EQ(d.status, TaskStatus::kSucceeded);
}

TEST_F(WorkerLoop, Spec4_5_BindControlSendsTheCommandAndReturnsTheReply) {
  write_frame(FrameType::kControlReply, 1, R"({"stale":"idle"})");  // ignored while idle
  task(3, {{"task", "tests.wl.control"}});
  write_frame(FrameType::kControlReply, 2, R"({"stale":true})");  // another task's: ignored
  write_frame(FrameType::kControlReply, 3, R"({"answer":42})");
  stop();
  EXPECT_EQ(run(), 0);
  auto out = output();
  ASSERT_EQ(out.size(), 4u);
  EXPECT_EQ(out[1].type, FrameType::kControl);
  EXPECT_EQ(out[1].seq, 3u);
  EXPECT_EQ(json::parse(out[1].payload),
            json({{"command", "running"}, {"control_data", {{"task", "x"}}}}));
  EXPECT_EQ(out[2].type, FrameType::kDone);
  EXPECT_EQ(json::parse(out[2].done.result), json({{"answer", 42}}));
  EXPECT_FALSE(out[2].done.is_stopping);
  EXPECT_EQ(out[3].type, FrameType::kShutdown);
}

TEST_F(WorkerLoop, Spec4_5_StopDuringAControlCallIsHonouredAfterTheTask) {
  task(3, {{"task", "tests.wl.control"}});
  stop();
  write_frame(FrameType::kControlReply, 3, R"({"answer":1})");
  task(4, {{"task", "dispatcherd.builtin.noop"}});  // never run: the worker stops first
  EXPECT_EQ(run(), 0);
  auto out = output();
  ASSERT_EQ(out.size(), 4u);
  EXPECT_EQ(out[2].type, FrameType::kDone);
  EXPECT_EQ(out[2].done.status, TaskStatus::kSucceeded);
  EXPECT_TRUE(out[2].done.is_stopping);
  EXPECT_EQ(out[3].type, FrameType::kShutdown);
}

TEST_F(WorkerLoop, Design10_TaskSentAheadDuringAControlCallRunsAfterIt) {
  task(3, {{"task", "tests.wl.control"}});
  task(4, {{"task", "dispatcherd.builtin.noop"}});  // prefetched by main
  write_frame(FrameType::kControlReply, 3, R"({"answer":1})");
  stop();
  EXPECT_EQ(run(), 0);
  auto out = output();
  ASSERT_EQ(out.size(), 5u);
  EXPECT_EQ(out[1].type, FrameType::kControl);
  EXPECT_EQ(out[2].type, FrameType::kDone);
  EXPECT_EQ(out[2].seq, 3u);
  EXPECT_EQ(json::parse(out[2].done.result), json({{"answer", 1}}));
  EXPECT_EQ(out[3].type, FrameType::kDone);
  EXPECT_EQ(out[3].seq, 4u);
  EXPECT_EQ(out[3].done.status, TaskStatus::kSucceeded);
  EXPECT_EQ(out[4].type, FrameType::kShutdown);
}

TEST_F(WorkerLoop, TwoTasksAheadDuringAControlCallAreAProtocolError) {
  task(3, {{"task", "tests.wl.control"}});
  task(4, {{"task", "dispatcherd.builtin.noop"}});
  task(5, {{"task", "dispatcherd.builtin.noop"}});  // main never sends more than one ahead
  EXPECT_EQ(run(), 2);
  auto out = output();
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[2].type, FrameType::kDone);
  EXPECT_EQ(out[2].done.status, TaskStatus::kFailed);
  EXPECT_TRUE(out[2].done.is_stopping);
}

TEST_F(WorkerLoop, Design10_CancelOfTheTaskSentAheadSkipsItWithoutRunning) {
  // Task 8 receives the cancel main sends for task 9 (written ahead, not started).
  task(8, {{"task", "tests.wl.self_cancel"}, {"kwargs", {{"seq", 9}, {"seconds", 0.05}}}});
  task(9, {{"task", "tests.wl.message"}});  // succeeds whenever it runs
  task(10, {{"task", "dispatcherd.builtin.noop"}});
  stop();
  EXPECT_EQ(run(), 0);
  auto out = output();
  ASSERT_EQ(out.size(), 5u);
  EXPECT_EQ(out[1].seq, 8u);
  EXPECT_EQ(out[1].done.status, TaskStatus::kSucceeded);  // not its own cancel
  EXPECT_EQ(out[2].seq, 9u);
  EXPECT_EQ(out[2].done.status, TaskStatus::kCancelled);
  EXPECT_EQ(out[2].done.error, "task canceled before it started");
  EXPECT_EQ(out[2].done.result, "null");
  EXPECT_EQ(out[3].seq, 10u);
  EXPECT_EQ(out[3].done.status, TaskStatus::kSucceeded);
}

TEST_F(WorkerLoop, EndOfInputMeansMainIsGone) {
  task(1, {{"task", "dispatcherd.builtin.noop"}});
  in_w_.reset();
  EXPECT_EQ(run(), 0);
  auto out = output();
  ASSERT_EQ(out.size(), 2u);  // no shutdown event: nobody to read it
  EXPECT_EQ(out[1].type, FrameType::kDone);
}

TEST_F(WorkerLoop, CorruptStreamExitsWithCode2) {
  task(1, {{"task", "dispatcherd.builtin.noop"}});
  std::string junk(32, '\x7f');
  ASSERT_EQ(::write(in_w_.get(), junk.data(), junk.size()), 32);
  EXPECT_EQ(run(), 2);
  auto out = output();
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[1].type, FrameType::kDone);
}

TEST_F(WorkerLoop, Spec7_7_OrphanedWorkerLeavesBeforeReading) {
  task(1, {{"task", "dispatcherd.builtin.noop"}});
  stop();
  EXPECT_EQ(run(/*main_pid=*/::getpid()), 0);  // our parent is not ourselves
  auto out = output();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].type, FrameType::kReady);
}

}  // namespace
}  // namespace dispatcherd
