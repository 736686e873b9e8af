// The pool against a fake launcher: the test plays each worker's side of the IPC protocol,
// so no process is forked.
#include "dispatcherd/pool/worker_pool.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include "fake_launcher.h"

namespace dispatcherd {
namespace {

using ipc::FrameType;
using testing::FakeLauncher;

PoolOptions opts(int min, int max, const std::function<void(PoolOptions&)>& tweak = {}) {
  PoolOptions o;
  o.min_workers = min;
  o.max_workers = max;
  if (tweak) tweak(o);
  return o;
}

struct PoolTest : ::testing::Test {
  EventLoop loop;
  FakeLauncher launcher{loop};
  std::vector<std::pair<std::string, TaskOutcome>> outcomes;
  std::unique_ptr<WorkerPool> pool;

  void make(PoolOptions o) {
    WorkerPool::Hooks h;
    h.finished = [this](const QueuedTask& t, TaskOutcome o2, const ipc::DonePayload*, int) {
      outcomes.emplace_back(t.uuid(), o2);
    };
    pool = std::make_unique<WorkerPool>(loop, launcher, o, std::move(h));
  }
  // Runs the loop until `cond` holds (generous deadline: "did it happen at all").
  bool until(const std::function<bool()>& cond, double timeout = 5) {
    MonoTime deadline = mono_now() + timeout;
    while (!cond()) {
      if (mono_now() > deadline) return false;
      loop.run_once(0.01);
    }
    return true;
  }
  void ready(int id) {
    ASSERT_TRUE(until([&] { return launcher.workers.count(id) > 0; }));
    launcher.send(id, FrameType::kReady);
    ASSERT_TRUE(until([&] {
      auto j = pool->workers_json(loop.now());
      return j["worker-" + std::to_string(id)]["status"] == "ready";
    }));
  }
  static QueuedTask task(std::string uuid, double timeout = 0) {
    QueuedTask t(R"({"task": "x"})", uuid, "", "x");
    t.timeout = timeout;
    return t;
  }
  // The next task frame main sent to worker `id`.
  std::optional<ipc::Frame> next_task(int id) {
    std::optional<ipc::Frame> f;
    until([&] { return (f = launcher.receive(id)).has_value(); });
    return f;
  }
  void done(int id, std::uint64_t seq, ipc::TaskStatus st = ipc::TaskStatus::kSucceeded,
            double ran_seconds = 0) {
    ipc::DonePayload d;
    d.status = st;
    d.time_started = 1000;
    d.time_finish = 1000 + ran_seconds;
    d.result = "null";
    launcher.send(id, FrameType::kDone, seq, ipc::encode_done(d));
  }
};

TEST_F(PoolTest, Spec7_3_StartsMinWorkers) {
  make(opts(3, 5));
  pool->start();
  EXPECT_EQ(launcher.launches, (std::vector<int>{0, 1, 2}));
}

TEST_F(PoolTest, Spec7_4_LeastRecentlyUsedFreeWorkerFirst) {
  make(opts(2, 2));
  pool->start();
  ready(0);
  ready(1);
  pool->submit(task("t1"));
  auto f = next_task(0);
  ASSERT_TRUE(f);
  done(0, f->seq);
  ASSERT_TRUE(until([&] { return outcomes.size() == 1; }));
  // Worker 0 just worked; worker 1 has been idle longest and gets the next task.
  pool->submit(task("t2"));
  auto g = next_task(1);
  ASSERT_TRUE(g);
  auto t = ipc::decode_task(g->payload);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->uuid, "t2");
}

TEST_F(PoolTest, Spec7_4_QueuesFifoAndDrainsOnDone) {
  make(opts(1, 1));
  pool->start();
  ready(0);
  pool->submit(task("a"));
  pool->submit(task("b"));
  pool->submit(task("c"));
  EXPECT_EQ(pool->queued_count(), 2u);
  for (const char* want : {"a", "b", "c"}) {
    auto f = next_task(0);
    ASSERT_TRUE(f);
    EXPECT_EQ(ipc::decode_task(f->payload)->uuid, want);
    done(0, f->seq);
  }
  ASSERT_TRUE(until([&] { return outcomes.size() == 3; }));
  EXPECT_EQ(pool->counters().succeeded, 3u);
}

TEST_F(PoolTest, Design10_TaskFrameCarriesWhenMainReadTheMessage) {
  // Queued or sent at once, the worker learns when main read the message (the latency figure).
  make(opts(1, 1));
  pool->start();
  ready(0);
  QueuedTask a = task("a"), b = task("b");
  a.received_at = 111.5;
  b.received_at = 222.25;
  pool->submit(std::move(a));
  pool->submit(std::move(b));
  for (double want : {111.5, 222.25}) {
    auto f = next_task(0);
    ASSERT_TRUE(f);
    EXPECT_EQ(ipc::decode_task(f->payload)->received_at, want);
    done(0, f->seq);
  }
}

TEST_F(PoolTest, Design8_FullQueueDropsAndCounts) {
  make(opts(1, 1, [](PoolOptions& o) { o.max_queued = 3; }));
  pool->start();  // the worker never reports ready: everything queues
  int accepted = 0;
  for (int i = 0; i < 5; ++i)
    accepted += pool->submit(task("q" + std::to_string(i))) != WorkerPool::Admission::Refused;
  EXPECT_EQ(accepted, 3);
  EXPECT_EQ(pool->queued_count(), 3u);
  EXPECT_EQ(pool->counters().queue_overflow, 2u);
}

TEST_F(PoolTest, Spec7_5_StaleDoneIsIgnored) {
  make(opts(1, 1));
  pool->start();
  ready(0);
  pool->submit(task("a"));
  auto f = next_task(0);
  ASSERT_TRUE(f);
  done(0, f->seq + 7);  // not this task's sequence number
  loop.run_once(0.05);
  EXPECT_TRUE(outcomes.empty());
  EXPECT_EQ(pool->busy_count(), 1u);
  done(0, f->seq);
  ASSERT_TRUE(until([&] { return outcomes.size() == 1; }));
}

TEST_F(PoolTest, Design3_TimeoutCancelsWithSeqThenKillsAfterGrace) {
  make(opts(1, 1, [](PoolOptions& o) { o.cancel_grace = 0.05; }));
  pool->start();
  ready(0);
  pool->submit(task("slow", 0.05));
  auto f = next_task(0);
  ASSERT_TRUE(f);
  // The worker ignores the cancel: SIGUSR1 carrying the task's seq, then SIGKILL.
  ASSERT_TRUE(until([&] { return outcomes.size() == 1; }));
  ASSERT_GE(launcher.signals.size(), 2u);
  EXPECT_EQ(launcher.signals[0].signo, SIGUSR1);
  EXPECT_EQ(static_cast<std::uint64_t>(launcher.signals[0].value), f->seq);
  EXPECT_EQ(launcher.signals[1].signo, SIGKILL);
  EXPECT_EQ(outcomes[0].second, TaskOutcome::TimedOut);
  EXPECT_EQ(pool->counters().timed_out, 1u);
  // A fresh worker replaces the killed one.
  EXPECT_TRUE(until([&] { return launcher.launches.size() == 2; }));
}

TEST_F(PoolTest, Design3_CooperativeCancelIsReportedAsCancel) {
  make(opts(1, 1, [](PoolOptions& o) { o.cancel_grace = 5; }));
  pool->start();
  ready(0);
  pool->submit(task("c1"));
  auto f = next_task(0);
  ASSERT_TRUE(pool->cancel_running("c1"));
  done(0, f->seq, ipc::TaskStatus::kCancelled);
  ASSERT_TRUE(until([&] { return outcomes.size() == 1; }));
  EXPECT_EQ(outcomes[0].second, TaskOutcome::Cancelled);
  EXPECT_EQ(pool->counters().canceled, 1u);
  EXPECT_EQ(launcher.signals.size(), 1u);  // no SIGKILL: it stopped in time
}

TEST_F(PoolTest, Design3_DoneSentBeforeDeathWins) {
  make(opts(1, 1));
  pool->start();
  ready(0);
  pool->submit(task("d"));
  auto f = next_task(0);
  done(0, f->seq);
  launcher.exit(0, 0x0900);  // killed right after writing done
  ASSERT_TRUE(until([&] { return outcomes.size() == 1; }));
  EXPECT_EQ(outcomes[0].second, TaskOutcome::Succeeded);
}

TEST_F(PoolTest, Spec7_7_DeathMidTaskCountsAndReplaces) {
  make(opts(1, 1));
  pool->start();
  ready(0);
  pool->submit(task("victim"));
  ASSERT_TRUE(next_task(0));
  launcher.exit(0, SIGKILL);
  ASSERT_TRUE(until([&] { return outcomes.size() == 1; }));
  EXPECT_EQ(outcomes[0].second, TaskOutcome::WorkerDied);
  EXPECT_EQ(pool->counters().canceled, 1u);
  EXPECT_TRUE(until([&] { return launcher.launches.size() == 2; }));
  auto j = pool->workers_json(loop.now());
  EXPECT_EQ(j["worker-0"]["status"], "error");
}

TEST_F(PoolTest, Spec7_7_DeathWithAQueueHandsTheNextTaskToALiveWorker) {
  // Issue #9 fault test: accounting the dead worker's task drains the queue; the next task
  // must not go to the dead worker (it would be lost), but wait for the replacement.
  make(opts(1, 1));
  pool->start();
  ready(0);
  pool->submit(task("victim"));
  pool->submit(task("next"));
  ASSERT_TRUE(next_task(0));
  launcher.exit(0, SIGKILL);
  ASSERT_TRUE(until([&] { return outcomes.size() == 1; }));
  EXPECT_EQ(pool->queued_count(), 1u);
  ready(1);
  auto f = next_task(1);
  ASSERT_TRUE(f);
  done(1, f->seq);
  ASSERT_TRUE(until([&] { return outcomes.size() == 2; }));
  EXPECT_EQ(outcomes[1], (std::pair<std::string, TaskOutcome>{"next", TaskOutcome::Succeeded}));
}

TEST_F(PoolTest, Design3_BurstGrowsPoolAtOnce) {
  make(opts(1, 12));
  pool->start();
  ready(0);
  for (int i = 0; i < 24; ++i) pool->submit(task("b" + std::to_string(i)));
  // Not one worker per pass: enough forks are requested at once (bounded by the in-flight cap).
  EXPECT_GE(launcher.launches.size(), 9u);
  for (int i = 1; i < 12; ++i) ready(i);
  EXPECT_EQ(launcher.launches.size(), 12u);
}

TEST_F(PoolTest, Design3_CrashLoopBacksOff) {
  make(opts(1, 1));
  launcher.fail_next = 1000;
  pool->start();
  MonoTime end = mono_now() + 0.5;
  while (mono_now() < end) loop.run_once(0.01);
  // Without backoff this would be hundreds of attempts in half a second.
  EXPECT_LE(launcher.launches.size(), 6u);
  EXPECT_GE(pool->counters().spawn_failures, 2u);
}

TEST_F(PoolTest, Design3_AFinishedTaskResetsTheSpawnBackoff) {
  make(opts(1, 2));
  launcher.fail_next = 3;  // the backoff grows to 0.2, 0.4, 0.8 s
  pool->start();
  ASSERT_TRUE(until([&] { return launcher.launches.size() == 4; }, 10));
  const int id = launcher.launches.back();
  ready(id);
  pool->submit(task("t1"));
  auto f = next_task(id);
  ASSERT_TRUE(f);
  done(id, f->seq);
  ASSERT_TRUE(until([&] {
    return pool->workers_json(loop.now())["worker-" + std::to_string(id)]["finished_count"] == 1;
  }));
  // A healthy worker that keeps running: the next scale-up fails once.
  launcher.fail_next = 1;
  pool->submit(task("t2"));
  pool->submit(task("t3"));
  ASSERT_TRUE(until([&] { return launcher.launches.size() == 5; }));
  const MonoTime failed_at = mono_now();
  ASSERT_TRUE(until([&] { return launcher.launches.size() == 6; }, 10));
  // One failure since a task finished: 0.2 s, not the 1.6 s the earlier failures would give.
  EXPECT_LT(mono_now() - failed_at, 1.0);
}

TEST_F(PoolTest, Spec7_8_ShutdownStopsIdleWorkersAndReportsDone) {
  make(opts(2, 2));
  pool->start();
  ready(0);
  ready(1);
  bool finished = false;
  pool->shutdown(1.0, [&] { finished = true; });
  for (int id : {0, 1}) {
    auto f = next_task(id);
    ASSERT_TRUE(f);
    EXPECT_EQ(f->type, FrameType::kStop);
    launcher.send(id, FrameType::kShutdown);
    launcher.exit(id, 0);
  }
  ASSERT_TRUE(until([&] { return finished; }));
  auto j = pool->workers_json(loop.now());
  EXPECT_EQ(j["worker-0"]["status"], "retired");
}

TEST_F(PoolTest, Design3_RecyclesAfterMaxTasks) {
  make(opts(1, 1, [](PoolOptions& o) { o.max_tasks_per_worker = 2; }));
  pool->start();
  ready(0);
  for (int i = 0; i < 2; ++i) {
    pool->submit(task("r" + std::to_string(i)));
    auto f = next_task(0);
    done(0, f->seq);
    ASSERT_TRUE(until([&] { return outcomes.size() == static_cast<std::size_t>(i + 1); }));
  }
  auto f = next_task(0);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->type, FrameType::kStop);
  EXPECT_EQ(pool->counters().recycles, 1u);
  EXPECT_TRUE(until([&] { return launcher.launches.size() == 2; }));
}

}  // namespace
}  // namespace dispatcherd

namespace dispatcherd {
namespace {

TEST_F(PoolTest, Spec8_1_SerialDuplicateWaitsForItsTwinThenRuns) {
  make(opts(2, 2));
  pool->start();
  ready(0);
  ready(1);
  QueuedTask a = task("first");
  a.identity = 42;
  QueuedTask b = task("second");
  b.identity = 42;
  b.on_duplicate = OnDuplicate::Serial;
  EXPECT_EQ(pool->submit(a), WorkerPool::Admission::Dispatched);
  EXPECT_EQ(pool->submit(b), WorkerPool::Admission::Held);  // a free worker exists, yet it waits
  EXPECT_EQ(pool->blocker().held_size(), 1u);
  auto f = next_task(0);
  ASSERT_TRUE(f);
  done(0, f->seq);
  // Its twin finished: the held task is released and runs.
  std::optional<ipc::Frame> g;
  ASSERT_TRUE(until([&] {
    for (int id : {0, 1})
      if ((g = launcher.receive(id))) return true;
    return false;
  }));
  EXPECT_EQ(ipc::decode_task(g->payload)->uuid, "second");
  EXPECT_EQ(pool->blocker().held_size(), 0u);
}

// ---- prefetch (DESIGN §10: one task ahead per worker for short tasks) ----

// One worker that has run one "x" task taking `ran` seconds and now runs "b".
struct PrefetchTest : PoolTest {
  std::uint64_t b_seq = 0;
  void busy_with_b(double ran) {
    make(opts(1, 1));
    pool->start();
    ready(0);
    pool->submit(task("a"));
    auto a = next_task(0);
    ASSERT_TRUE(a);
    done(0, a->seq, ipc::TaskStatus::kSucceeded, ran);
    ASSERT_TRUE(until([&] { return outcomes.size() == 1; }));
    pool->submit(task("b"));
    auto b = next_task(0);
    ASSERT_TRUE(b);
    b_seq = b->seq;
  }
  std::vector<std::string> queued_uuids() {
    std::vector<std::string> out;
    pool->for_each_queued([&](const QueuedTask& t) { out.emplace_back(t.uuid()); });
    return out;
  }
};

TEST_F(PrefetchTest, Design10_ShortTaskGoesAheadToTheBusyWorkerAndStartsOnItsDone) {
  busy_with_b(0.00001);
  pool->submit(task("c"));
  auto c = next_task(0);  // written before b is done
  ASSERT_TRUE(c);
  EXPECT_EQ(c->seq, b_seq + 1);
  EXPECT_EQ(ipc::decode_task(c->payload)->uuid, "c");
  EXPECT_EQ(queued_uuids(), std::vector<std::string>{"c"});  // listed as queued until it starts
  EXPECT_EQ(pool->queued_count(), 1u);
  ASSERT_EQ(pool->running().size(), 1u);
  EXPECT_EQ(pool->running()[0].second->uuid(), "b");
  done(0, b_seq);
  ASSERT_TRUE(until([&] { return outcomes.size() == 2; }));
  ASSERT_EQ(pool->running().size(), 1u);
  EXPECT_EQ(pool->running()[0].second->uuid(), "c");
  EXPECT_EQ(pool->queued_count(), 0u);
  done(0, c->seq);
  ASSERT_TRUE(until([&] { return outcomes.size() == 3; }));
  EXPECT_EQ(outcomes[2], (std::pair<std::string, TaskOutcome>{"c", TaskOutcome::Succeeded}));
}

TEST_F(PrefetchTest, Design10_NothingGoesAheadOfALongTask) {
  busy_with_b(5);  // "x" took 5 s last time
  pool->submit(task("c"));
  for (int i = 0; i < 5; ++i) loop.run_once(0.01);
  EXPECT_FALSE(launcher.receive(0).has_value());
  EXPECT_EQ(queued_uuids(), std::vector<std::string>{"c"});
}

TEST_F(PrefetchTest, Design10_CancelOfATaskSentAheadSignalsItsSeqAndEndsCancelled) {
  busy_with_b(0.00001);
  pool->submit(task("c"));
  auto c = next_task(0);
  ASSERT_TRUE(c);
  auto removed = pool->remove_queued([](const QueuedTask& t) { return t.uuid() == "c"; });
  EXPECT_TRUE(removed.empty());  // it ends through the worker, not here
  EXPECT_EQ(pool->queued_count(), 0u);
  ASSERT_FALSE(launcher.signals.empty());
  EXPECT_EQ(launcher.signals.back().signo, SIGUSR1);
  EXPECT_EQ(launcher.signals.back().value, static_cast<int>(c->seq));
  done(0, b_seq);
  done(0, c->seq, ipc::TaskStatus::kCancelled);  // the worker skipped it
  ASSERT_TRUE(until([&] { return outcomes.size() == 3; }));
  EXPECT_EQ(outcomes[1], (std::pair<std::string, TaskOutcome>{"b", TaskOutcome::Succeeded}));
  EXPECT_EQ(outcomes[2], (std::pair<std::string, TaskOutcome>{"c", TaskOutcome::Cancelled}));
  EXPECT_EQ(pool->counters().cancelled, 1u);
}

TEST_F(PrefetchTest, Design10_WorkerDeathGivesTheTaskSentAheadToTheNextWorker) {
  busy_with_b(0.00001);
  pool->submit(task("c"));
  ASSERT_TRUE(next_task(0));
  launcher.exit(0, SIGKILL);
  ASSERT_TRUE(until([&] { return outcomes.size() == 2; }));
  EXPECT_EQ(outcomes[1], (std::pair<std::string, TaskOutcome>{"b", TaskOutcome::WorkerDied}));
  EXPECT_EQ(queued_uuids(), std::vector<std::string>{"c"});  // back at the head, not lost
  ready(1);
  auto f = next_task(1);
  ASSERT_TRUE(f);
  EXPECT_EQ(ipc::decode_task(f->payload)->uuid, "c");
  done(1, f->seq);
  ASSERT_TRUE(until([&] { return outcomes.size() == 3; }));
  EXPECT_EQ(outcomes[2], (std::pair<std::string, TaskOutcome>{"c", TaskOutcome::Succeeded}));
}

TEST_F(PrefetchTest, Design10_AStoppingWorkerGivesTheTaskSentAheadBack) {
  busy_with_b(0.00001);
  pool->submit(task("c"));
  ASSERT_TRUE(next_task(0));
  ipc::DonePayload d;
  d.is_stopping = true;  // e.g. a stop arrived during a control call: it will not read c
  d.result = "null";
  launcher.send(0, FrameType::kDone, b_seq, ipc::encode_done(d));
  ASSERT_TRUE(until([&] { return outcomes.size() == 2; }));
  EXPECT_EQ(queued_uuids(), std::vector<std::string>{"c"});
  EXPECT_TRUE(pool->running().empty());
}

TEST_F(PrefetchTest, Design10_ShutdownCancelsTheTaskSentAhead) {
  busy_with_b(0.00001);
  pool->submit(task("c"));
  auto c = next_task(0);
  ASSERT_TRUE(c);
  bool finished = false;
  pool->shutdown(5, [&] { finished = true; });
  ASSERT_FALSE(launcher.signals.empty());
  EXPECT_EQ(launcher.signals.back().value, static_cast<int>(c->seq));
  EXPECT_EQ(pool->queued_count(), 0u);
}

}  // namespace
}  // namespace dispatcherd
