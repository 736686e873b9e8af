// End to end: the built dispatcherd against the test Postgres. Tasks are published with
// pg_notify like any client would; effects are observed through files the `record` task
// writes, control replies, /proc and the log.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <set>
#include <string>
#include <thread>

#include "dispatcherd/message.h"
#include "pg_test_env.h"
#include "service_process.h"

namespace dispatcherd::testing {
namespace {

std::string config_for(const std::string& channel, const std::string& app, const std::string& pool,
                       const std::string& extra = "", const std::string& idle = "null") {
  return R"(version: 2
service:
  pool_kwargs: )" +
         pool + R"(
  main_kwargs: {node_id: e2e-node}
brokers:
  pg_notify:
    config: {conninfo: "{DSN} application_name=)" +
         app + R"("}
    channels: [")" +
         channel + R"("]
    default_publish_channel: ")" +
         channel + R"("
    max_connection_idle_seconds: )" +
         idle + R"(
    max_self_check_message_age_seconds: )" +
         (idle == "null" ? "null" : "0.9") + R"(
extensions:
  cancel_grace_seconds: 1
  shutdown_timeout_seconds: 5
)" + extra;
}

std::string record_task(const std::string& uuid, const std::string& path) {
  return nlohmann::json{
      {"task", "dispatcherd.builtin.record"}, {"uuid", uuid}, {"kwargs", {{"path", path}}}}
      .dump();
}

// True when `running` shows a task with `uuid` on a worker.
bool running_has(const std::string& channel, const std::string& uuid) {
  auto r = pg_control(channel, "running");
  if (r.empty()) return false;
  for (auto& [key, msg] : r[0].items())
    if (key.rfind("worker-", 0) == 0 && msg.value("uuid", "") == uuid) return true;
  return false;
}

nlohmann::json main_status(const std::string& channel) {
  auto r = pg_control(channel, "main");
  return r.empty() ? nlohmann::json() : r[0];
}

TEST(RunTasks, Spec2_2_ThousandRecordTasksRunExactlyOnce) {
  REQUIRE_PG();
  std::string ch = unique_channel("once");
  ServiceProcess svc(config_for(ch, "e2e_once", "{min_workers: 2, max_workers: 4}"));
  ASSERT_TRUE(svc.start());
  ASSERT_TRUE(svc.wait_for_log("listening")) << svc.log();
  std::string path = svc.dir() + "/record.txt";
  std::vector<std::string> payloads;
  std::set<std::string> expected;
  for (int i = 0; i < 1000; ++i) {
    std::string uuid = "rec-" + std::to_string(i);
    expected.insert(uuid);
    payloads.push_back(record_task(uuid, path));
  }
  pg_notify_many(ch, payloads, 100);
  ASSERT_TRUE(eventually([&] { return read_lines(path).size() >= 1000; }, 60)) << svc.log();
  auto lines = read_lines(path);
  EXPECT_EQ(lines.size(), 1000u);
  EXPECT_EQ(std::set<std::string>(lines.begin(), lines.end()), expected);
  auto m = main_status(ch);
  EXPECT_EQ(m["pool"]["finished_count"], 1000) << m.dump();
}

TEST(RunTasks, Spec7_7_KilledWorkerIsReplacedAndLaterTasksRun) {
  REQUIRE_PG();
  std::string ch = unique_channel("kill");
  ServiceProcess svc(config_for(ch, "e2e_kill", "{min_workers: 1, max_workers: 2}"));
  ASSERT_TRUE(svc.start());
  ASSERT_TRUE(svc.wait_for_log("listening")) << svc.log();
  pg_notify(ch, R"({"task": "dispatcherd.builtin.sleep", "uuid": "victim", "args": [60]})");
  pid_t victim = -1;
  ASSERT_TRUE(eventually(
      [&] {
        auto r = pg_control(ch, "workers");
        if (r.empty()) return false;
        for (auto& [k, w] : r[0].items())
          if (w.is_object() && w["current_task_uuid"] == "victim") victim = w["pid"].get<pid_t>();
        return victim > 0;
      },
      20));
  ASSERT_EQ(::kill(victim, SIGKILL), 0);
  ASSERT_TRUE(svc.wait_for_log("worker died unexpectedly")) << svc.log();
  EXPECT_NE(svc.log().find("uuid=victim"), std::string::npos);
  std::string path = svc.dir() + "/after.txt";
  pg_notify(ch, record_task("after-kill", path));
  ASSERT_TRUE(eventually([&] { return read_lines(path).size() == 1; }, 20)) << svc.log();
  auto m = main_status(ch);
  EXPECT_EQ(m["pool"]["canceled_count"], 1) << m.dump();
  EXPECT_GE(m["pool"]["next_worker_id"].get<int>(), 2);
  EXPECT_TRUE(process_alive(svc.pid()));
}

TEST(RunTasks, Spec3_1_5_TerminatedListenerReconnectsAndLaterTasksRun) {
  REQUIRE_PG();
  std::string ch = unique_channel("term");
  std::string app = "e2e_term_" + std::to_string(::getpid());
  ServiceProcess svc(config_for(ch, app, "{min_workers: 1, max_workers: 2}"));
  ASSERT_TRUE(svc.start());
  ASSERT_TRUE(svc.wait_for_log("listening")) << svc.log();
  std::string killed = pg_exec(
      "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE "
      "application_name = '" +
      app + "'");
  ASSERT_NE(killed, "0");
  std::string path = svc.dir() + "/after.txt";
  // Notifications sent while the listener is away are lost (pg_notify promises no more), so
  // publish again until one lands.
  int n = 0;
  ASSERT_TRUE(eventually(
      [&] {
        pg_notify(ch, record_task("after-term-" + std::to_string(n++), path));
        return eventually([&] { return !read_lines(path).empty(); }, 0.5);
      },
      30))
      << svc.log();
  EXPECT_NE(svc.log().find("connection lost"), std::string::npos) << svc.log();
}

TEST(RunTasks, Spec7_8_SigtermExitsZeroAndLeavesNoChild) {
  REQUIRE_PG();
  std::string ch = unique_channel("sigterm");
  ServiceProcess svc(config_for(ch, "e2e_sigterm", "{min_workers: 3, max_workers: 3}"));
  ASSERT_TRUE(svc.start());
  ASSERT_TRUE(svc.wait_for_log("listening")) << svc.log();
  pg_notify(ch, R"({"task": "dispatcherd.builtin.sleep", "uuid": "s1", "args": [0.5]})");
  pg_notify(ch, R"({"task": "dispatcherd.builtin.sleep", "uuid": "s2", "args": [60]})");
  std::set<pid_t> tree;
  ASSERT_TRUE(eventually(
      [&] {
        tree = descendants(svc.pid());
        return tree.size() >= 4;  // the zygote and three workers
      },
      20));
  ASSERT_TRUE(eventually([&] { return running_has(ch, "s2"); }, 10));
  svc.signal(SIGTERM);
  auto st = svc.wait_exit(30);
  ASSERT_TRUE(st.has_value()) << svc.log();
  EXPECT_TRUE(WIFEXITED(*st)) << svc.log();
  EXPECT_EQ(WEXITSTATUS(*st), 0) << svc.log();
  for (pid_t p : tree)
    EXPECT_TRUE(eventually([&] { return !process_alive(p); }, 5))
        << "child " << p << " outlived the service";
}

TEST(RunTasks, Spec7_8_WorkersIgnoreSigintToTheProcessGroup) {
  REQUIRE_PG();
  std::string ch = unique_channel("sigint");
  ServiceProcess svc(config_for(ch, "e2e_sigint", "{min_workers: 1, max_workers: 1}"));
  ASSERT_TRUE(svc.start());
  ASSERT_TRUE(svc.wait_for_log("listening")) << svc.log();
  std::string path = svc.dir() + "/rec.txt";
  pg_notify(ch, R"({"task": "dispatcherd.builtin.sleep", "uuid": "grp", "args": [1.0]})");
  ASSERT_TRUE(eventually([&] { return running_has(ch, "grp"); }, 10));
  ::kill(-svc.pid(), SIGINT);  // like Ctrl-C in a terminal: the whole group gets it
  auto st = svc.wait_exit(30);
  ASSERT_TRUE(st.has_value()) << svc.log();
  EXPECT_EQ(WEXITSTATUS(*st), 0);
  // The running task was allowed to finish, not killed by the group signal.
  EXPECT_EQ(svc.log().find("died unexpectedly"), std::string::npos) << svc.log();
}

TEST(RunTasks, Spec2_1_BadInputIsLoggedAndTheServiceCarriesOn) {
  REQUIRE_PG();
  std::string ch = unique_channel("bad");
  ServiceProcess svc(config_for(ch, "e2e_bad", "{min_workers: 1, max_workers: 1}"));
  ASSERT_TRUE(svc.start());
  ASSERT_TRUE(svc.wait_for_log("listening")) << svc.log();
  pg_notify(ch, "[1, 2]");
  pg_notify(ch, R"({"task": 5})");
  pg_notify(ch, R"({"task": "no.such.task", "uuid": "unknown-1"})");
  pg_notify(ch, R"({"task": "dispatcherd.builtin.fail", "uuid": "fail-1"})");
  pg_notify(ch, R"({"task": "dispatcherd.builtin.crash", "uuid": "crash-1"})");
  std::string path = svc.dir() + "/ok.txt";
  pg_notify(ch, record_task("still-ok", path));
  ASSERT_TRUE(eventually([&] { return read_lines(path).size() == 1; }, 20)) << svc.log();
  std::string log = svc.log();
  EXPECT_NE(log.find("not an object"), std::string::npos) << log;
  EXPECT_NE(log.find("unknown-1"), std::string::npos) << log;
  EXPECT_NE(log.find("fail-1"), std::string::npos) << log;
  EXPECT_NE(log.find("crash-1"), std::string::npos) << log;
  EXPECT_TRUE(process_alive(svc.pid()));
}

TEST(RunTasks, Spec8_FloodOf100kNeitherBlocksTheLoopNorOutgrowsTheQueueBound) {
  REQUIRE_PG();
  // Its point is timing and memory under a flood; the -O0 sanitizer build parses messages too
  // slowly (tens of seconds for 100k) and its memory is inflated by the shadow heap.
  if (sanitizer_build()) GTEST_SKIP() << "flood timing and memory are measured in the plain build";
  std::string ch = unique_channel("flood");
  ServiceProcess svc(config_for(ch, "e2e_flood", "{min_workers: 2, max_workers: 2}",
                                "  max_queued_tasks: 2000\n", "1"));
  ASSERT_TRUE(svc.start());
  ASSERT_TRUE(svc.wait_for_log("listening")) << svc.log();
  // 100k distinct sleeps of 10 ms: far more than two workers drain, so the queue bound bites.
  pg_exec("SELECT count(pg_notify('" + ch +
          "', '{\"task\": \"dispatcherd.builtin.sleep\", \"args\": [0.01], \"uuid\": \"f-' || i "
          "|| '\"}')) FROM generate_series(1, 100000) i");
  // While the backlog drains, control round trips still get answers.
  for (int i = 0; i < 3; ++i) {
    auto r = pg_control(ch, "alive", nlohmann::json::object(), 1, 10);
    ASSERT_EQ(r.size(), 1u) << "alive got no reply during the flood\n" << svc.log();
  }
  nlohmann::json m;
  ASSERT_TRUE(eventually(
      [&] {
        m = main_status(ch);
        return m.is_object() && m["received_count"].get<long>() >= 100000;
      },
      60))
      << m.dump();
  EXPECT_LE(m["pool"]["queued_count"].get<long>(), 2000) << m.dump();
  EXPECT_GT(m["pool"]["queue_overflow_count"].get<long>(), 90000) << m.dump();
  EXPECT_LT(private_kb(svc.pid()), 64 * 1024) << "main grew past what a 2000-task queue needs";
  // The self-check (every 1 s) did not take the busy connection for a dead one, and keeps
  // succeeding once the backlog is gone. A reply restarts the self-check period (§3.1.4), so
  // ask less often than once a period.
  nlohmann::json p;
  for (int attempt = 0; attempt < 10; ++attempt) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    auto r = pg_control(ch, "producers");
    ASSERT_EQ(r.size(), 1u);
    p = r[0]["pg_notify-producer"];
    if (p["broker_self_check"]["success_count"].get<int>() >= 1) break;
  }
  EXPECT_GE(p["broker_self_check"]["success_count"].get<int>(), 1) << p.dump();
  EXPECT_EQ(p["recycle_count"], 0) << p.dump();
}

}  // namespace
TEST(RunTasks, Design10_MainHandsBackTheHeapABacklogGrewOnceTheQueueEmpties) {
  REQUIRE_PG();
  if (sanitizer_build()) GTEST_SKIP() << "the sanitizer build's heap is its own";
  std::string ch = unique_channel("trim");
  ServiceProcess svc(config_for(
      ch, "e2e_trim", "{min_workers: 1, max_workers: 1, scaledown_interval: 0.2}", ""));
  ASSERT_TRUE(svc.start());
  ASSERT_TRUE(svc.wait_for_log("listening")) << svc.log();
  long kb_idle = private_kb(svc.pid());
  // 50k no-ops with ~1 kB of kwargs each, in one transaction: one worker cannot keep up, so
  // most of them queue in main at once (tens of MB).
  pg_exec("SELECT count(pg_notify('" + ch +
          "', '{\"task\": \"dispatcherd.builtin.noop\", \"uuid\": \"t-' || i || "
          "'\", \"kwargs\": {\"pad\": \"' || repeat('x', 1000) || '\"}}')) "
          "FROM generate_series(1, 50000) i");
  long kb_peak = 0;
  nlohmann::json m;
  ASSERT_TRUE(eventually(
      [&] {
        kb_peak = std::max(kb_peak, private_kb(svc.pid()));
        m = main_status(ch);
        return m.is_object() && m["pool"]["finished_count"].get<long>() >= 50000;
      },
      120))
      << m.dump();
  EXPECT_GT(kb_peak, kb_idle + 8 * 1024) << "the backlog never queued: nothing to hand back";
  // The pool's maintenance pass (every 0.2 s here) trims the heap once the queue is empty.
  long kb_after = 0;
  EXPECT_TRUE(eventually(
      [&] {
        kb_after = private_kb(svc.pid());
        return kb_after < kb_idle + 4 * 1024;
      },
      10))
      << "main kept " << kb_after << " kB private after the backlog drained (idle " << kb_idle
      << " kB, peak " << kb_peak << " kB)";
}

}  // namespace dispatcherd::testing
