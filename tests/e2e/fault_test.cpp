// End to end, things broken on purpose (issue #9): the database restarted under the service,
// workers killed, stopped or failing to start, the service itself terminated or killed.
// Each test asserts what the service promises afterwards (DESIGN §3, §8): it keeps serving,
// every task is accounted for, the fault is logged and exported, and no process outlives it.
// Faults already covered elsewhere (one killed worker, a terminated backend, a plain SIGTERM,
// a task ignoring its cancel) are not repeated here.
#include <dirent.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <chrono>
#include <fstream>
#include <set>
#include <string>

#include "net_client.h"
#include "pg_test_env.h"
#include "private_postgres.h"
#include "service_process.h"

namespace dispatcherd::testing {
namespace {

// A config on `dsn` (the shared cluster when empty: {DSN}), with the socket broker and the
// metrics endpoint on `metrics_port` when non-zero.
std::string config(const std::string& ch, const std::string& pool, int metrics_port = 0,
                   const std::string& extra = "", const std::string& dsn = "{DSN}") {
  std::string metrics =
      metrics_port
          ? "  metrics_kwargs: {host: 127.0.0.1, port: " + std::to_string(metrics_port) + "}\n"
          : "";
  return R"(version: 2
service:
  pool_kwargs: )" +
         pool + R"(
  main_kwargs: {node_id: e2e-fault}
)" + metrics +
         R"(brokers:
  pg_notify:
    config: {conninfo: ")" +
         dsn + R"("}
    channels: [")" +
         ch + R"("]
    default_publish_channel: ")" +
         ch + R"("
    max_connection_idle_seconds: null
  socket:
    socket_path: "{DIR}/d.sock"
extensions:
  cancel_grace_seconds: 1
  shutdown_timeout_seconds: 2
)" + extra;
}

std::string record_task(const std::string& uuid, const std::string& path) {
  return nlohmann::json{
      {"task", "dispatcherd.builtin.record"}, {"uuid", uuid}, {"kwargs", {{"path", path}}}}
      .dump();
}

nlohmann::json main_status(const std::string& ch) {
  auto r = pg_control(ch, "main");
  return r.empty() ? nlohmann::json::object() : r[0];
}

long pool_count(const std::string& ch, const std::string& key) {
  auto m = main_status(ch);
  return m.contains("pool") ? m["pool"].value(key, -1L) : -1;
}

// Tasks that ended, whatever the outcome.
long ended(const nlohmann::json& m) {
  if (!m.contains("pool")) return -1;
  long n = 0;
  for (const char* k : {"succeeded_count", "failed_count", "cancelled_count", "timed_out_count",
                        "worker_died_count"})
    n += m["pool"].value(k, 0L);
  return n;
}

std::set<pid_t> children(pid_t pid) {
  std::set<pid_t> out;
  std::ifstream in("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children");
  pid_t c;
  while (in >> c) out.insert(c);
  return out;
}

// The live workers of a service: the children of its zygote (main's only child).
std::set<pid_t> workers_of(pid_t main_pid) {
  std::set<pid_t> out;
  for (pid_t z : children(main_pid))
    for (pid_t w : children(z))
      if (process_alive(w)) out.insert(w);
  return out;
}

std::set<std::string> unique_lines(const std::string& path) {
  auto v = read_lines(path);
  return {v.begin(), v.end()};
}

TEST(Faults, Design8_ReconnectsAfterPostgresRestart) {
  REQUIRE_PG();
  PrivatePostgres pg;
  ASSERT_TRUE(pg.ok()) << "could not start a private Postgres cluster";
  std::string ch = unique_channel("pgrestart");
  int port = free_tcp_port();
  ServiceProcess svc(config(ch, "{min_workers: 2, max_workers: 2}", port, "", pg.dsn()));
  ASSERT_TRUE(svc.start());
  ASSERT_TRUE(svc.wait_for_log("pg_notify connection established")) << svc.log();

  // Tasks flow: the first batch is read, and the database goes away while it runs.
  std::string before = svc.dir() + "/before.txt";
  std::vector<std::string> batch;
  for (int i = 0; i < 20; ++i)
    batch.push_back(R"({"task": "dispatcherd.builtin.sleep", "args": [0.1], "uuid": "s-)" +
                    std::to_string(i) + "\", \"callbacks\": [" + record_task("x", before) + "]}");
  ASSERT_TRUE(pg.notify_many(ch, batch));
  ASSERT_TRUE(eventually([&] { return !read_lines(before).empty(); }, 20)) << svc.log();
  ASSERT_TRUE(pg.down());
  ASSERT_TRUE(svc.wait_for_log("pg_notify connection lost")) << svc.log();
  // Workers carry on without the database: every task already read still runs.
  EXPECT_TRUE(eventually([&] { return read_lines(before).size() == 20; }, 20)) << svc.log();
  ASSERT_TRUE(pg.up());
  ASSERT_TRUE(svc.wait_for_log("pg_notify reconnected after", 30)) << svc.log();

  // Everything published once the database is back runs, each task exactly once.
  std::string after = svc.dir() + "/after.txt";
  std::vector<std::string> payloads;
  std::set<std::string> expected;
  for (int i = 0; i < 200; ++i) {
    expected.insert("a-" + std::to_string(i));
    payloads.push_back(record_task("a-" + std::to_string(i), after));
  }
  ASSERT_TRUE(pg.notify_many(ch, payloads));
  ASSERT_TRUE(eventually([&] { return read_lines(after).size() >= 200; }, 30)) << svc.log();
  EXPECT_EQ(read_lines(after).size(), 200u);
  EXPECT_EQ(unique_lines(after), expected);

  // The outage is exported.
  std::string text = fetch_metrics(port);
  ASSERT_FALSE(text.empty()) << "no /metrics answer on port " << port;
  EXPECT_EQ(metric_value(text, "dispatcherd_pg_connected"), 1.0) << text;
  EXPECT_GE(metric_value(text, "dispatcherd_pg_reconnects_total").value_or(0), 1.0) << text;
  EXPECT_GT(metric_value(text, "dispatcherd_pg_outage_seconds_total").value_or(0), 0.0) << text;
  EXPECT_TRUE(process_alive(svc.pid()));
}

TEST(Faults, Design3_WorkersKilledInALoopUnderLoadEveryTaskIsAccountedFor) {
  REQUIRE_PG();
  std::string ch = unique_channel("killloop");
  int port = free_tcp_port();
  ServiceProcess svc(config(ch, "{min_workers: 4, max_workers: 4}", port));
  ASSERT_TRUE(svc.start());
  ASSERT_TRUE(svc.wait_for_log("pg_notify connection established")) << svc.log();
  ASSERT_TRUE(eventually([&] { return workers_of(svc.pid()).size() == 4; }, 20));

  constexpr int kTasks = 300;
  std::vector<std::string> p;
  for (int i = 0; i < kTasks; ++i)
    p.push_back(R"({"task": "dispatcherd.builtin.sleep", "args": [0.05], "uuid": "k-)" +
                std::to_string(i) + "\"}");
  pg_notify_many(ch, p);
  int kills = 0;
  for (int round = 0; round < 6; ++round) {
    auto live = workers_of(svc.pid());
    ASSERT_FALSE(live.empty()) << svc.log();
    pid_t victim = *live.begin();
    ASSERT_EQ(::kill(victim, SIGKILL), 0);
    ++kills;
    // The dead worker is replaced before the next round.
    ASSERT_TRUE(eventually(
        [&] {
          auto now = workers_of(svc.pid());
          return now.size() == 4 && !now.count(victim);
        },
        20))
        << svc.log();
  }
  nlohmann::json m;
  ASSERT_TRUE(eventually([&] { return ended(m = main_status(ch)) == kTasks; }, 60)) << m.dump();
  EXPECT_EQ(m["pool"]["queue_overflow_count"], 0) << m.dump();
  EXPECT_EQ(m["pool"]["succeeded_count"].get<long>() + m["pool"]["worker_died_count"].get<long>(),
            kTasks)
      << m.dump();
  EXPECT_TRUE(process_alive(svc.pid()));
  std::string text = fetch_metrics(port);
  EXPECT_EQ(metric_value(text, "dispatcherd_worker_deaths_total"), kills) << text;
  // Still serving normally.
  std::string path = svc.dir() + "/after.txt";
  pg_notify(ch, record_task("after-kills", path));
  EXPECT_TRUE(eventually([&] { return read_lines(path).size() == 1; }, 20)) << svc.log();
}

TEST(Faults, Design3_StoppedWorkerPastItsTimeoutIsKilledAndReplaced) {
  REQUIRE_PG();
  std::string ch = unique_channel("sigstop");
  ServiceProcess svc(config(ch, "{min_workers: 1, max_workers: 1}"));
  ASSERT_TRUE(svc.start());
  ASSERT_TRUE(svc.wait_for_log("pg_notify connection established")) << svc.log();
  pid_t worker = -1;
  ASSERT_TRUE(eventually(
      [&] {
        auto r = pg_control(ch, "workers");
        if (r.empty()) return false;
        for (auto& [k, w] : r[0].items())
          if (w.is_object() && w.value("status", "") == "ready") worker = w["pid"].get<pid_t>();
        return worker > 0;
      },
      20));
  ASSERT_EQ(::kill(worker, SIGSTOP), 0);  // frozen before its task even arrives
  pg_notify(ch, R"({"task": "dispatcherd.builtin.sleep", "uuid": "frozen", "timeout": 0.5,
                    "args": [60]})");
  ASSERT_TRUE(eventually([&] { return pool_count(ch, "timed_out_count") == 1; }, 20)) << svc.log();
  EXPECT_TRUE(eventually([&] { return !process_alive(worker); }, 5)) << "stopped worker survived";
  EXPECT_NE(svc.log().find("killing worker"), std::string::npos) << svc.log();
  std::string path = svc.dir() + "/after.txt";
  pg_notify(ch, record_task("after-stop", path));
  ASSERT_TRUE(eventually([&] { return read_lines(path).size() == 1; }, 20)) << svc.log();
  EXPECT_GE(pool_count(ch, "next_worker_id"), 2);
}

TEST(Faults, Design3_SpawnFailuresAreLoggedCountedAndThePoolRecovers) {
  REQUIRE_PG();
  std::string ch = unique_channel("spawnfail");
  int port = free_tcp_port();
  // Every third fork fails: the pool starts short and must make up for it by itself.
  ServiceProcess svc(config(ch, "{min_workers: 4, max_workers: 4}", port), {},
                     {"DISPATCHERD_FAULT_SPAWN_FAIL_EVERY=3"});
  ASSERT_TRUE(svc.start());
  ASSERT_TRUE(svc.wait_for_log("pg_notify connection established")) << svc.log();
  ASSERT_TRUE(svc.wait_for_log("could not be started")) << svc.log();
  // It serves with what it has, and keeps serving while workers come and go.
  std::string path = svc.dir() + "/rec.txt";
  std::vector<std::string> p;
  std::set<std::string> expected;
  for (int i = 0; i < 100; ++i) {
    expected.insert("r-" + std::to_string(i));
    p.push_back(record_task("r-" + std::to_string(i), path));
  }
  pg_notify_many(ch, p);
  ASSERT_TRUE(eventually([&] { return read_lines(path).size() >= 100; }, 30)) << svc.log();
  EXPECT_EQ(unique_lines(path), expected);
  ASSERT_TRUE(eventually([&] { return workers_of(svc.pid()).size() == 4; }, 20)) << svc.log();
  // Worker deaths make it fork again; failures keep coming and the pool still gets back to
  // full strength each time.
  for (int round = 0; round < 4; ++round) {
    auto live = workers_of(svc.pid());
    pid_t victim = *live.begin();
    ::kill(victim, SIGKILL);
    ASSERT_TRUE(eventually(
        [&] {
          auto now = workers_of(svc.pid());
          return now.size() == 4 && !now.count(victim);
        },
        20))
        << "round " << round << "\n"
        << svc.log();
  }
  std::string text = fetch_metrics(port);
  EXPECT_GE(metric_value(text, "dispatcherd_worker_spawn_failures_total").value_or(0), 2.0) << text;
  EXPECT_TRUE(process_alive(svc.pid()));
}

TEST(Faults, Design3_SigtermDuringABurstExitsZeroInTimeAndLeavesNothingBehind) {
  REQUIRE_PG();
  std::string ch = unique_channel("termburst");
  ServiceProcess svc(config(ch, "{min_workers: 2, max_workers: 4}"));
  ASSERT_TRUE(svc.start());
  ASSERT_TRUE(svc.wait_for_log("pg_notify connection established")) << svc.log();
  std::string sock = svc.dir() + "/d.sock";
  struct stat st {};
  ASSERT_EQ(::stat(sock.c_str(), &st), 0);
  std::vector<std::string> p;
  // One task that ignores its cancel, so shutdown has to escalate to SIGKILL.
  p.push_back(R"({"task": "dispatcherd.builtin.sleep", "uuid": "stubborn",
                  "kwargs": {"seconds": 60, "ignore_cancel": true}})");
  for (int i = 0; i < 2000; ++i)
    p.push_back(R"({"task": "dispatcherd.builtin.sleep", "args": [0.2], "uuid": "b-)" +
                std::to_string(i) + "\"}");
  pg_notify_many(ch, p, 500);
  std::set<pid_t> tree;
  ASSERT_TRUE(eventually([&] { return (tree = descendants(svc.pid())).size() >= 5; }, 20))
      << svc.log();
  auto t0 = std::chrono::steady_clock::now();
  svc.signal(SIGTERM);
  // Bound: shutdown_timeout_seconds (2) + cancel_grace_seconds (1), plus slack for a busy box.
  auto status = svc.wait_exit(10);
  double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(status.has_value()) << svc.log();
  EXPECT_TRUE(WIFEXITED(*status)) << svc.log();
  EXPECT_EQ(WEXITSTATUS(*status), 0) << svc.log();
  std::printf("SIGTERM during a burst: exit after %.2f s\n", took);
  tree.merge(descendants(svc.pid()));
  for (pid_t c : tree) EXPECT_FALSE(process_alive(c)) << "child " << c << " outlived the service";
  EXPECT_NE(::stat(sock.c_str(), &st), 0) << "socket file left behind";
}

TEST(Faults, Design3_SigkillOfMainLeavesNoWorkerOrCommandTaskBehind) {
  REQUIRE_PG();
  std::string ch = unique_channel("sigkill");
  ServiceProcess svc(config(ch, "{min_workers: 3, max_workers: 3}", 0, R"(  tasks:
    sleeper:
      command: [sleep, "60"]
)"));
  ASSERT_TRUE(svc.start());
  ASSERT_TRUE(svc.wait_for_log("pg_notify connection established")) << svc.log();
  pg_notify(ch, R"({"task": "sleeper", "uuid": "cmd-1"})");
  pg_notify(ch, R"({"task": "dispatcherd.builtin.sleep", "uuid": "w-1", "args": [60]})");
  // The command's own process: a `sleep` somewhere below main.
  auto has_sleep = [&](std::set<pid_t>& tree) {
    tree = descendants(svc.pid());
    for (pid_t p : tree) {
      std::ifstream in("/proc/" + std::to_string(p) + "/comm");
      std::string comm;
      in >> comm;
      if (comm == "sleep") return true;
    }
    return false;
  };
  std::set<pid_t> tree;
  ASSERT_TRUE(eventually([&] { return has_sleep(tree) && workers_of(svc.pid()).size() == 3; }, 20))
      << svc.log();
  tree = descendants(svc.pid());
  svc.signal(SIGKILL);
  ASSERT_TRUE(svc.wait_exit(10).has_value());
  for (pid_t p : tree)
    EXPECT_TRUE(eventually([&] { return !process_alive(p); }, 10))
        << "process " << p << " outlived a SIGKILLed main";
}

}  // namespace
}  // namespace dispatcherd::testing
