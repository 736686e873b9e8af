// End to end: `cancel` of a task in each place it can wait (on a worker, in the queue, held by
// the blocker, in the delayer), `set_log_level` errors, over both transports (pg_notify and
// the Unix socket); and a `run` control call from a bound task (upstream-spec §4.4, §4.5).
// Whether a task ran is observed through dispatcherd.builtin.record writing its uuid to a file.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "dispatcherd/message.h"
#include "pg_test_env.h"
#include "service_process.h"

namespace dispatcherd::testing {
namespace {

using json = nlohmann::json;

std::string config(const std::string& ch, const std::string& node) {
  return R"(version: 2
service:
  pool_kwargs: {min_workers: 1, max_workers: 1}
  main_kwargs: {node_id: )" +
         node + R"(}
brokers:
  pg_notify:
    config: {conninfo: "{DSN}"}
    channels: [")" +
         ch + R"("]
    default_publish_channel: ")" +
         ch + R"("
    max_connection_idle_seconds: null
  socket:
    socket_path: "{DIR}/ctl.sock"
producers:
  ControlProducer: {}
publish:
  default_broker: pg_notify
extensions:
  cancel_grace_seconds: 5
)";
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

/// One control request over the service's Unix socket (§3.2): one line out, reply lines back
/// on the same connection, chunk envelopes reassembled in order. The first reply, or null.
json socket_control(const std::string& path, const std::string& command, const json& data,
                    double timeout = 10) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ADD_FAILURE() << "connect " << path << ": " << std::strerror(errno);
    ::close(fd);
    return nullptr;
  }
  json req = {{"control", command}, {"reply_to", "reply_to_" + uuid4_underscored()}};
  if (!data.empty()) req["control_data"] = data;
  std::string line = req.dump() + "\n";
  if (::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size()))
    ADD_FAILURE() << "short write to " << path;
  std::string buf, partial;
  json out;
  double deadline = now_s() + timeout;
  while (out.is_null() && now_s() < deadline) {
    for (std::size_t nl; out.is_null() && (nl = buf.find('\n')) != std::string::npos;) {
      json j = json::parse(buf.substr(0, nl), nullptr, false);
      buf.erase(0, nl + 1);
      if (j.is_object() && j.contains("__dispatcherd_chunk__")) {
        partial += j.value("payload", "");
        if (j.value("index", 0) + 1 == j.value("total", 0))
          out = json::parse(partial, nullptr, false);
        continue;
      }
      out = j;
    }
    if (!out.is_null()) break;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    char chunk[4096];
    ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n <= 0) break;
    buf.append(chunk, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return out;
}

/// The two transports a control request can take.
enum class Transport { PgNotify, Socket };
void PrintTo(Transport t, std::ostream* os) {
  *os << (t == Transport::Socket ? "socket" : "pg_notify");
}

class ControlCancel : public ::testing::TestWithParam<Transport> {
 protected:
  void SetUp() override {
    if (pg_dsn().empty()) GTEST_SKIP() << "no test Postgres";
    ch_ = unique_channel("cancel");
    svc_ = std::make_unique<ServiceProcess>(config(ch_, "node-cancel"));
    ASSERT_TRUE(svc_->start());
    ASSERT_TRUE(svc_->wait_for_log("pg_notify connection established")) << svc_->log();
    path_ = svc_->dir() + "/record.txt";
  }

  /// Sends a control command over this test's transport; the reply, or null.
  json control(const std::string& command, const json& data = json::object()) {
    if (GetParam() == Transport::Socket)
      return socket_control(svc_->dir() + "/ctl.sock", command, data);
    auto r = pg_control(ch_, command, data, 1, 10);
    return r.empty() ? json() : r[0];
  }

  json record(const std::string& uuid) const {
    return {{"task", "dispatcherd.builtin.record"}, {"uuid", uuid}, {"kwargs", {{"path", path_}}}};
  }
  void publish(const json& message) const { pg_notify(ch_, message.dump()); }

  /// Occupies the only worker with a 30 s sleep and waits until it runs.
  void occupy_worker(const std::string& uuid) {
    publish({{"task", "dispatcherd.builtin.sleep"}, {"uuid", uuid}, {"args", {30}}});
    ASSERT_TRUE(eventually([&] { return control("running").contains("worker-0"); }, 30))
        << svc_->log();
  }

  /// Cancels the sleeper on the worker, then proves by a sentinel record task (FIFO after
  /// everything published before) that the pool runs again and what has run by then.
  std::vector<std::string> release_and_drain(const std::string& sleeper) {
    json r = control("cancel", {{"uuid", sleeper}});
    EXPECT_TRUE(r.contains("worker-0")) << r.dump();
    publish(record("sentinel"));
    EXPECT_TRUE(eventually(
        [&] {
          auto lines = read_lines(path_);
          return !lines.empty() && lines.back() == "sentinel";
        },
        30))
        << svc_->log();
    return read_lines(path_);
  }

  std::string ch_, path_;
  std::unique_ptr<ServiceProcess> svc_;
};

std::string name_of(const ::testing::TestParamInfo<Transport>& info) {
  return info.param == Transport::Socket ? "socket" : "pg_notify";
}

INSTANTIATE_TEST_SUITE_P(Transports, ControlCancel,
                         ::testing::Values(Transport::PgNotify, Transport::Socket), name_of);

TEST_P(ControlCancel, Spec4_4_CancelStopsRunningTask) {
  occupy_worker("run-1");
  json r = control("cancel", {{"uuid", "run-1"}});
  // The reply lists the match as `running` showed it, before removal, plus node_id.
  ASSERT_TRUE(r.is_object()) << svc_->log();
  EXPECT_EQ(r.size(), 2u) << r.dump();
  EXPECT_EQ(r["node_id"], "node-cancel");
  const json& m = r["worker-0"];
  EXPECT_EQ(m["task"], "dispatcherd.builtin.sleep") << r.dump();
  EXPECT_EQ(m["uuid"], "run-1");
  EXPECT_EQ(m["args"], json::array({30}));
  EXPECT_EQ(m["channel"], ch_);
  EXPECT_EQ(m.size(), 4u) << m.dump();
  // The worker reports the cancel long before the 30 s sleep would end, and is free again.
  ASSERT_TRUE(eventually(
      [&] {
        json main = control("main");
        return main.is_object() && main["pool"]["canceled_count"] == 1;
      },
      20))
      << svc_->log();
  // Upstream counts a task that caught the cancel as canceled, not finished (§7.5); the
  // worker's own count includes it (§4.4 `workers`).
  json main = control("main");
  EXPECT_EQ(main["pool"]["finished_count"], 0) << main.dump();
  EXPECT_EQ(main["pool"]["cancelled_count"], 1) << main.dump();
  EXPECT_EQ(main["pool"]["succeeded_count"], 0) << main.dump();
  json workers = control("workers");
  EXPECT_EQ(workers["worker-0"]["finished_count"], 1) << workers.dump();
  EXPECT_EQ(workers["worker-0"]["active_cancel"], false) << workers.dump();
  EXPECT_EQ(workers["worker-0"]["current_task_uuid"], nullptr) << workers.dump();
  EXPECT_EQ(control("running"), json({{"node_id", "node-cancel"}}));
  publish(record("after"));
  ASSERT_TRUE(
      eventually([&] { return read_lines(path_) == std::vector<std::string>{"after"}; }, 20))
      << svc_->log();
}

TEST_P(ControlCancel, Spec4_4_CancelRemovesQueuedTask) {
  occupy_worker("busy-q");
  publish(record("queued-victim"));
  ASSERT_TRUE(eventually([&] { return control("running").contains("queued-0"); }, 20))
      << svc_->log();
  json r = control("cancel", {{"uuid", "queued-victim"}});
  ASSERT_TRUE(r.is_object()) << svc_->log();
  EXPECT_EQ(r.size(), 2u) << r.dump();
  EXPECT_EQ(r["node_id"], "node-cancel");
  EXPECT_EQ(r["queued-0"], json({{"task", "dispatcherd.builtin.record"},
                                 {"uuid", "queued-victim"},
                                 {"kwargs", {{"path", path_}}},
                                 {"channel", ch_}}))
      << r.dump();
  // Only the sleeper is left.
  json running = control("running");
  EXPECT_EQ(running.size(), 2u) << running.dump();
  EXPECT_TRUE(running.contains("worker-0")) << running.dump();
  // Cancelling something that is no longer there matches nothing.
  EXPECT_EQ(control("cancel", {{"uuid", "queued-victim"}}), json({{"node_id", "node-cancel"}}));
  EXPECT_EQ(release_and_drain("busy-q"), std::vector<std::string>{"sentinel"});
  // Both ended as cancelled in our counter (the victim before it started); upstream's
  // canceled_count keeps counting only the task cancelled on its worker.
  json pool = control("main")["pool"];
  EXPECT_EQ(pool["cancelled_count"], 2) << pool.dump();
  EXPECT_EQ(pool["canceled_count"], 1) << pool.dump();
}

TEST_P(ControlCancel, Spec8_1_CancelRemovesBlockedTask) {
  occupy_worker("busy-b");
  // The first copy waits in the queue (active); an identical second one (same task, args,
  // kwargs) with on_duplicate queue_one is held by the blocker.
  json first = record("dup-first");
  first["on_duplicate"] = "queue_one";
  json second = record("dup-blocked");
  second["on_duplicate"] = "queue_one";
  publish(first);
  ASSERT_TRUE(eventually([&] { return control("running").contains("queued-0"); }, 20))
      << svc_->log();
  publish(second);
  ASSERT_TRUE(eventually([&] { return control("running").contains("blocked-0"); }, 20))
      << svc_->log();
  json r = control("cancel", {{"uuid", "dup-blocked"}});
  ASSERT_TRUE(r.is_object()) << svc_->log();
  EXPECT_EQ(r.size(), 2u) << r.dump();
  EXPECT_EQ(r["node_id"], "node-cancel");
  EXPECT_EQ(r["blocked-0"], json({{"task", "dispatcherd.builtin.record"},
                                  {"uuid", "dup-blocked"},
                                  {"kwargs", {{"path", path_}}},
                                  {"on_duplicate", "queue_one"},
                                  {"channel", ch_}}))
      << r.dump();
  json running = control("running");
  EXPECT_FALSE(running.contains("blocked-0")) << running.dump();
  EXPECT_EQ(running["queued-0"]["uuid"], "dup-first") << running.dump();
  // Once the first copy has run, nothing is left to release the blocked one.
  EXPECT_EQ(release_and_drain("busy-b"), (std::vector<std::string>{"dup-first", "sentinel"}));
}

TEST_P(ControlCancel, Spec8_2_CancelRemovesDelayedTask) {
  json delayed = record("delayed-victim");
  delayed["delay"] = 30;
  publish(delayed);
  ASSERT_TRUE(eventually([&] { return control("running").contains("delayed-0"); }, 20))
      << svc_->log();
  json r = control("cancel", {{"uuid", "delayed-victim"}});
  ASSERT_TRUE(r.is_object()) << svc_->log();
  EXPECT_EQ(r.size(), 2u) << r.dump();
  EXPECT_EQ(r["node_id"], "node-cancel");
  EXPECT_EQ(r["delayed-0"], json({{"task", "dispatcherd.builtin.record"},
                                  {"uuid", "delayed-victim"},
                                  {"kwargs", {{"path", path_}}},
                                  {"delay", 30},
                                  {"channel", ch_}}))
      << r.dump();
  EXPECT_EQ(control("running"), json({{"node_id", "node-cancel"}}));
  // The delayer keeps working (a short delay still fires) and holds nothing else, so the
  // cancelled task cannot run later.
  json later = record("delayed-kept");
  later["delay"] = 0.5;
  publish(later);
  ASSERT_TRUE(eventually([&] { return !read_lines(path_).empty(); }, 20)) << svc_->log();
  EXPECT_EQ(read_lines(path_), std::vector<std::string>{"delayed-kept"});
  json main = control("main");
  EXPECT_EQ(main["pool"]["delayed_count"], 0) << main.dump();
  EXPECT_EQ(control("running"), json({{"node_id", "node-cancel"}}));
}

TEST_P(ControlCancel, Spec4_4_SetLogLevelErrorsAreReplies) {
  json r = control("set_log_level", {{"level", "bogus"}});
  EXPECT_EQ(r, json({{"error", "Unknown log level 'bogus'."}, {"node_id", "node-cancel"}}))
      << svc_->log();
  const json type_error = {
      {"error", "Log level must be provided as a string or int via the \"level\" key."},
      {"node_id", "node-cancel"}};
  EXPECT_EQ(control("set_log_level"), type_error);  // no control_data at all
  EXPECT_EQ(control("set_log_level", {{"other", "DEBUG"}}), type_error);
  EXPECT_EQ(control("set_log_level", {{"level", json::array({"DEBUG"})}}), type_error);
  // The service is unaffected and still answers a good request.
  r = control("set_log_level", {{"level", " warning "}});
  EXPECT_EQ(r["level"], "WARNING") << r.dump();
  EXPECT_EQ(r["previous_level"], "NOTSET") << r.dump();
  EXPECT_EQ(r["logger"], "dispatcherd") << r.dump();
}

// A bound task in a library-mode service calls ctx.control("run", ...) from its worker; the
// child task goes through the whole pipeline and runs once (§4.5).
TEST(Control, Spec4_5_RunFromBoundTaskStartsTheChildTask) {
  REQUIRE_PG();
  std::string bin = test_path("DISPATCHERD_BOUND_SERVICE_BIN");
  ASSERT_FALSE(bin.empty()) << "DISPATCHERD_BOUND_SERVICE_BIN is not set";
  std::string ch = unique_channel("bound");
  ServiceProcess svc(config(ch, "node-bound"));
  svc.set_command({bin});
  ASSERT_TRUE(svc.start());
  ASSERT_TRUE(svc.wait_for_log("pg_notify connection established")) << svc.log();
  std::string path = svc.dir() + "/record.txt", reply_path = svc.dir() + "/reply.json";
  pg_notify(
      ch, json({{"task", "tests.bound.run_record"},
                {"uuid", "parent"},
                {"kwargs", {{"path", path}, {"child_uuid", "child"}, {"reply_path", reply_path}}}})
              .dump());
  ASSERT_TRUE(eventually([&] { return !read_lines(path).empty(); }, 30)) << svc.log();
  ASSERT_TRUE(eventually(
      [&] {
        auto r = pg_control(ch, "main");
        return !r.empty() && r[0]["pool"]["finished_count"] == 2;
      },
      20))
      << svc.log();
  EXPECT_EQ(read_lines(path), std::vector<std::string>{"child"});
  // The worker got `run`'s reply: the ack of exactly what it sent, without node_id.
  auto replies = read_lines(reply_path);
  ASSERT_EQ(replies.size(), 1u) << svc.log();
  EXPECT_EQ(json::parse(replies[0]), json({{"ack",
                                            {{"task", "dispatcherd.builtin.record"},
                                             {"uuid", "child"},
                                             {"kwargs", {{"path", path}}}}}}));
  auto m = pg_control(ch, "main");
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0]["pool"]["succeeded_count"], 2) << m[0].dump();
  EXPECT_GE(m[0]["control_count"], 2) << m[0].dump();  // the bound `run` and this `main`
  auto p = pg_control(ch, "producers");
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0]["control-producer"]["produced_count"], 1) << p[0].dump();
}

}  // namespace
}  // namespace dispatcherd::testing
