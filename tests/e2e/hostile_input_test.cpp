// End to end, hostile input (issue #9): malformed, oversized and malicious messages on every
// way in (pg_notify, the Unix socket, the metrics port). For each one the service stays
// alive, the matching counter moves, an awaited reply is an error reply, and a normal task
// still runs afterwards (DESIGN §8; upstream-spec §2, §3.2, §4.1, §10).
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <unistd.h>

#include <memory>
#include <random>
#include <string>

#include "dispatcherd/chunking.h"
#include "net_client.h"
#include "pg_test_env.h"
#include "service_process.h"

namespace dispatcherd::testing {
namespace {

std::string config(const std::string& ch, int metrics_port, const std::string& extra) {
  return R"(version: 2
service:
  pool_kwargs: {min_workers: 1, max_workers: 2}
  main_kwargs: {node_id: e2e-hostile, chunk_message_timeout_seconds: 1}
  metrics_kwargs: {host: 127.0.0.1, port: )" +
         std::to_string(metrics_port) + R"(}
brokers:
  pg_notify:
    config: {conninfo: "{DSN}"}
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
  max_partial_messages: 100
  max_partial_bytes: 1048576
  max_socket_clients: 8
  max_socket_line_bytes: 262144
)" + extra;
}

struct HostileInput : ::testing::Test {
  void SetUp() override {
    if (pg_dsn().empty()) GTEST_SKIP() << "no test Postgres";
    ch = unique_channel("hostile");
    port = free_tcp_port();
    svc = std::make_unique<ServiceProcess>(config(ch, port, ""));
    ASSERT_TRUE(svc->start());
    ASSERT_TRUE(svc->wait_for_log("pg_notify connection established")) << svc->log();
    ASSERT_TRUE(eventually([&] { return !fetch_metrics(port).empty(); }, 10));
  }

  double metric(const std::string& name) {
    return metric_value(fetch_metrics(port), name).value_or(-1);
  }
  // Polls the metric until it reaches `at_least`.
  bool metric_reaches(const std::string& name, double at_least) {
    return eventually([&] { return metric(name) >= at_least; }, 20);
  }
  long pool_count(const std::string& key) {
    auto r = pg_control(ch, "main");
    return r.empty() ? -1 : r[0]["pool"].value(key, -1L);
  }
  // A normal task still runs, and the service is the same process.
  void still_serving() {
    std::string path = svc->dir() + "/ok-" + std::to_string(n_ok++) + ".txt";
    pg_notify(ch, nlohmann::json{{"task", "dispatcherd.builtin.record"},
                                 {"uuid", "still-ok"},
                                 {"kwargs", {{"path", path}}}}
                      .dump());
    EXPECT_TRUE(eventually([&] { return read_lines(path).size() == 1; }, 20)) << svc->log();
    EXPECT_TRUE(process_alive(svc->pid()));
  }
  // Sends `line` + "\n" over a fresh socket connection, expecting no reply.
  void socket_send(const std::string& line) {
    int fd = unix_connect(svc->dir() + "/d.sock");
    ASSERT_GE(fd, 0);
    EXPECT_TRUE(write_all(fd, line + "\n"));
    ::close(fd);
  }
  // Sends `line` + "\n" over a fresh socket connection and returns the reply line.
  std::optional<std::string> socket_request(const std::string& line) {
    int fd = unix_connect(svc->dir() + "/d.sock");
    if (fd < 0) return std::nullopt;
    write_all(fd, line + "\n");
    auto r = read_line(fd, 5);
    ::close(fd);
    return r;
  }

  std::string ch;
  int port = 0;
  int n_ok = 0;
  std::unique_ptr<ServiceProcess> svc;
};

TEST_F(HostileInput, Spec2_1_InvalidJsonRunsAsABareTaskThatFailsCleanly) {
  pg_notify(ch, "{not json at all");
  pg_notify(ch, R"({"task": "dispatcherd.builtin.noop", "args": [1,]})");
  pg_notify(ch, "\t \n");
  EXPECT_TRUE(eventually([&] { return pool_count("failed_count") == 3; }, 20)) << svc->log();
  still_serving();
}

TEST_F(HostileInput, Spec2_1_InvalidUtf8IsNeverRunNorEchoedRaw) {
  int fd = unix_connect(svc->dir() + "/d.sock");
  ASSERT_GE(fd, 0);
  // Postgres refuses invalid UTF-8 in NOTIFY, so these come over the socket.
  ASSERT_TRUE(write_all(fd, "\xff\xfe\xfd\n"));
  ASSERT_TRUE(write_all(fd, "{\"task\": \"dispatcherd.builtin.noop\xff\"}\n"));
  ASSERT_TRUE(write_all(fd, "{\"task\": \"dispatcherd.builtin.noop\", \"uuid\": \"\xc3\x28\"}\n"));
  ::close(fd);
  EXPECT_TRUE(eventually([&] { return pool_count("failed_count") == 3; }, 20)) << svc->log();
  EXPECT_EQ(pool_count("succeeded_count"), 0);
  EXPECT_EQ(svc->log().find('\xff'), std::string::npos) << "a raw invalid byte reached the log";
  still_serving();
}

TEST_F(HostileInput, Design8_DeepNestingIsRefusedAndCounted) {
  std::string deep(100000, '[');
  deep += std::string(100000, ']');
  socket_send(deep);
  std::string deep_args = R"({"task": "dispatcherd.builtin.noop", "args": )" +
                          std::string(50000, '[') + std::string(50000, ']') + "}";
  socket_send(deep_args);
  pg_notify(ch, std::string(3900, '[') + std::string(3900, ']'));
  EXPECT_TRUE(metric_reaches("dispatcherd_bad_messages_total", 3)) << svc->log();
  // Unbalanced: not JSON at all, so a (failing) bare task, not a crash.
  socket_send(std::string(100000, '['));
  EXPECT_TRUE(eventually([&] { return pool_count("failed_count") == 1; }, 20)) << svc->log();
  still_serving();
}

TEST_F(HostileInput, Spec2_2_HugeNumbersAreRefusedOrHarmless) {
  // Beyond double range: not JSON to our parser, so a bare task that fails as unknown.
  pg_notify(ch, R"({"task": "dispatcherd.builtin.noop", "uuid": "inf", "timeout": 1e400})");
  // Refused: a negative delay, a number for a uuid.
  pg_notify(ch, R"({"task": "dispatcherd.builtin.noop", "uuid": "neg-delay", "delay": -1e300})");
  pg_notify(ch, R"({"task": "dispatcherd.builtin.noop", "uuid": 1e300})");
  EXPECT_TRUE(metric_reaches("dispatcherd_bad_messages_total", 2)) << svc->log();
  // Finite but absurd: held or run, never a broken timer.
  pg_notify(ch, R"({"task": "dispatcherd.builtin.noop", "uuid": "far-delay", "delay": 1e300})");
  pg_notify(ch, R"({"task": "dispatcherd.builtin.noop", "uuid": "far-timeout", "timeout": 1e300})");
  pg_notify(ch, R"({"task": "dispatcherd.builtin.noop", "uuid": "big-args",
                    "args": [1e308, 123456789012345678901234567890, 18446744073709551616]})");
  EXPECT_TRUE(eventually([&] { return pool_count("succeeded_count") == 2; }, 20)) << svc->log();
  EXPECT_EQ(pool_count("failed_count"), 1);
  auto r = pg_control(ch, "running");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0]["delayed-0"]["uuid"], "far-delay") << r[0].dump();
  still_serving();
}

TEST_F(HostileInput, Spec2_2_WrongFieldTypesAreRefusedAndCounted) {
  const char* bad[] = {
      R"({"task": 5})",
      R"({"task": null})",
      R"({"task": ["dispatcherd.builtin.noop"]})",
      R"({"task": ""})",
      R"({"uuid": "no-task"})",
      R"({"task": "dispatcherd.builtin.noop", "uuid": 5})",
      R"({"task": "dispatcherd.builtin.noop", "uuid": {}})",
      R"({"task": "dispatcherd.builtin.noop", "args": {}})",
      R"({"task": "dispatcherd.builtin.noop", "args": "x"})",
      R"({"task": "dispatcherd.builtin.noop", "kwargs": []})",
      R"({"task": "dispatcherd.builtin.noop", "kwargs": 1})",
      R"({"task": "dispatcherd.builtin.noop", "timeout": "1"})",
      R"({"task": "dispatcherd.builtin.noop", "timeout": -1})",
      R"({"task": "dispatcherd.builtin.noop", "delay": [1]})",
      R"({"task": "dispatcherd.builtin.noop", "delay": -5})",
      R"({"task": "dispatcherd.builtin.noop", "on_duplicate": 3})",
      R"({"task": "dispatcherd.builtin.noop", "callbacks": "x"})",
      R"({"task": "dispatcherd.builtin.noop", "errbacks": {}})",
  };
  std::vector<std::string> payloads(std::begin(bad), std::end(bad));
  pg_notify_many(ch, payloads, 1);
  double n = static_cast<double>(payloads.size());
  EXPECT_TRUE(metric_reaches("dispatcherd_bad_messages_total", n)) << svc->log();
  // Types the main process passes on are the worker's business: the task fails there.
  pg_notify(ch, R"({"task": "dispatcherd.builtin.noop", "callbacks": [5, "x", null]})");
  pg_notify(ch, R"({"task": "dispatcherd.builtin.sleep", "args": ["ten"]})");
  pg_notify(ch, R"({"task": "dispatcherd.builtin.noop", "bind": "yes", "on_duplicate": "bogus"})");
  EXPECT_TRUE(eventually(
      [&] { return pool_count("failed_count") + pool_count("succeeded_count") == 3; }, 20))
      << svc->log();
  EXPECT_EQ(metric("dispatcherd_bad_messages_total"), n);
  still_serving();
}

TEST_F(HostileInput, Spec4_1_WrongControlFieldTypesGetAnErrorReply) {
  const char* bad[] = {
      R"({"control": 5, "reply_to": "me"})",
      R"({"control": null, "reply_to": "me"})",
      R"({"control": ["alive"], "reply_to": "me"})",
      R"({"control": "running", "control_data": "x", "reply_to": "me"})",
      R"({"control": "running", "control_data": [1], "reply_to": "me"})",
      R"({"control": "set_log_level", "control_data": {"level": []}, "reply_to": "me"})",
      R"({"control": "alive", "delay": "soon", "reply_to": "me"})",
      R"({"control": "no_such_command", "reply_to": "me"})",
      R"({"control": "_private", "reply_to": "me"})",
  };
  for (const char* req : bad) {
    auto reply = socket_request(req);
    ASSERT_TRUE(reply.has_value()) << "no reply to " << req << "\n" << svc->log();
    auto j = nlohmann::json::parse(*reply, nullptr, false);
    EXPECT_TRUE(j.is_object() && j.contains("error")) << req << " -> " << *reply;
    EXPECT_EQ(j.value("node_id", ""), "e2e-hostile") << *reply;
  }
  // A filter value of another type is legal (upstream compares with ==): it matches nothing.
  auto none =
      socket_request(R"({"control": "cancel", "control_data": {"uuid": 5}, "reply_to": "me"})");
  ASSERT_TRUE(none.has_value());
  EXPECT_EQ(nlohmann::json::parse(*none), (nlohmann::json{{"node_id", "e2e-hostile"}}));
  auto unknown = pg_control(ch, "no_such_command");
  ASSERT_EQ(unknown.size(), 1u);
  EXPECT_EQ(unknown[0]["error"], "No control method no_such_command");
  // reply_to itself of the wrong type: nowhere to answer, and nothing may break.
  socket_send(R"({"control": "alive", "reply_to": 5})");
  socket_send(R"({"control": 5, "reply_to": {"a": 1}})");
  pg_notify(ch, R"({"control": "alive", "reply_to": ["x"]})");
  // A delayed request with a null reply_to: nothing to warn about, and nothing may break.
  pg_notify(ch, R"({"control": "alive", "delay": 0.1, "reply_to": null})");
  EXPECT_TRUE(eventually(
      [&] {
        auto r = pg_control(ch, "running");
        return r.size() == 1 && !r[0].contains("delayed-0");
      },
      10));
  EXPECT_TRUE(metric_reaches("dispatcherd_bad_messages_total", 9)) << svc->log();
  auto alive = pg_control(ch, "alive");
  EXPECT_EQ(alive.size(), 1u) << svc->log();
  still_serving();
}

// Runs SQL on a fresh connection; the error text, "" on success.
std::string try_notify(const std::string& ch, const std::string& payload) {
  std::unique_ptr<PGconn, decltype(&PQfinish)> c(PQconnectdb(pg_dsn().c_str()), &PQfinish);
  const char* params[2] = {ch.c_str(), payload.c_str()};
  std::unique_ptr<PGresult, decltype(&PQclear)> r(
      PQexecParams(c.get(), "SELECT pg_notify($1, $2)", 2, nullptr, params, nullptr, nullptr, 0),
      &PQclear);
  return PQresultStatus(r.get()) == PGRES_TUPLES_OK ? "" : PQerrorMessage(c.get());
}

// A record task padded with an ignored key to exactly `bytes` bytes.
std::string padded_record(const std::string& uuid, const std::string& path, std::size_t bytes) {
  nlohmann::json j = {{"task", "dispatcherd.builtin.record"},
                      {"uuid", uuid},
                      {"kwargs", {{"path", path}}},
                      {"pad", ""}};
  std::size_t base = j.dump().size();
  j["pad"] = std::string(bytes - base, 'p');
  return j.dump();
}

TEST_F(HostileInput, Spec2_4_Payloads7999And8000BytesAtTheEdge) {
  std::string path = svc->dir() + "/edge.txt";
  std::string p7999 = padded_record("b7999", path, 7999);
  ASSERT_EQ(p7999.size(), 7999u);
  EXPECT_EQ(try_notify(ch, p7999), "");
  // Postgres itself refuses 8000 bytes: a publisher must chunk it (and split_message does).
  std::string p8000 = padded_record("b8000", path, 8000);
  EXPECT_NE(try_notify(ch, p8000), "");
  auto pieces = split_message(p8000, kPgNotifyMaxBytes);
  ASSERT_TRUE(pieces.ok());
  ASSERT_EQ(pieces->size(), 2u);
  pg_notify_many(ch, *pieces, 1);
  // The socket has no such limit below its line bound.
  socket_send(padded_record("s8000", path, 8000));
  EXPECT_TRUE(eventually([&] { return read_lines(path).size() == 3; }, 20)) << svc->log();
  auto lines = read_lines(path);
  EXPECT_EQ(std::set<std::string>(lines.begin(), lines.end()),
            (std::set<std::string>{"b7999", "b8000", "s8000"}));
  still_serving();
}

std::string chunk(const std::string& id, long index, long total, const std::string& payload) {
  return nlohmann::json{{"__dispatcherd_chunk__", "v1"},
                        {"message_id", id},
                        {"index", index},
                        {"total", total},
                        {"payload", payload}}
      .dump();
}

TEST_F(HostileInput, Spec2_4_ChunkFloodWithRandomIdsStaysBounded) {
  long kb_before = private_kb(svc->pid());
  std::mt19937_64 rng(42);
  std::vector<std::string> flood;
  // 3000 first halves of messages that never complete, 4 KB each: 12 MB if nothing bounded it.
  for (int i = 0; i < 3000; ++i) {
    char id[33];
    std::snprintf(id, sizeof id, "%016llx%016llx", static_cast<unsigned long long>(rng()),
                  static_cast<unsigned long long>(rng()));
    flood.push_back(chunk(id, 0, 2, std::string(4000, 'a' + static_cast<char>(i % 26))));
  }
  pg_notify_many(ch, flood, 200);
  EXPECT_TRUE(metric_reaches("dispatcherd_chunk_overflow_total", 2900)) << svc->log();
  auto r = pg_control(ch, "chunks");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_LE(r[0]["partials"].size(), 100u) << r[0]["status"].dump();
  EXPECT_EQ(r[0]["status"]["total_chunks_received"], 3000) << r[0]["status"].dump();
  long grown = private_kb(svc->pid()) - kb_before;
  if (!sanitizer_build()) {
    EXPECT_LT(grown, 8 * 1024) << "main grew " << grown << " kB for a 1 MB partial-chunk bound";
  }
  still_serving();
}

TEST_F(HostileInput, Spec2_4_BadChunkIndexesAreRefusedAndARepeatedIndexOverwrites) {
  const std::string id = "0123456789abcdef0123456789abcdef";
  pg_notify_many(ch,
                 {chunk(id, 2, 2, "x"), chunk(id, -1, 2, "x"), chunk(id, 0, 0, "x"),
                  chunk(id, 0, 1000000000, "x"),
                  R"({"__dispatcherd_chunk__": "v1", "message_id": 7, "index": 0, "total": 1})",
                  R"({"__dispatcherd_chunk__": "v2", "message_id": "a", "index": 0, "total": 1})",
                  R"({"__dispatcherd_chunk__": "v1", "message_id": "a", "index": 0.5, "total": 1})",
                  R"({"__dispatcherd_chunk__": "v1", "message_id": "a", "index": 0, "total": 1,
                      "payload": 5})"},
                 1);
  EXPECT_TRUE(metric_reaches("dispatcherd_chunk_errors_total", 8)) << svc->log();
  // index 0 arrives twice: the second copy wins (upstream-spec §2.4), and the message runs.
  std::string path = svc->dir() + "/chunked.txt";
  std::string msg = nlohmann::json{{"task", "dispatcherd.builtin.record"},
                                   {"uuid", "reassembled"},
                                   {"kwargs", {{"path", path}}}}
                        .dump();
  std::string a = msg.substr(0, 20), b = msg.substr(20);
  pg_notify_many(ch, {chunk(id, 0, 2, "garbage"), chunk(id, 0, 2, a), chunk(id, 1, 2, b)}, 1);
  EXPECT_TRUE(eventually([&] { return read_lines(path).size() == 1; }, 20)) << svc->log();
  // A set whose pieces reassemble into garbage is refused, not run.
  const std::string id2 = "fedcba9876543210fedcba9876543210";
  pg_notify_many(ch, {chunk(id2, 0, 2, "{\"task\": "), chunk(id2, 1, 2, "nope")}, 1);
  EXPECT_TRUE(metric_reaches("dispatcherd_chunk_errors_total", 9)) << svc->log();
  still_serving();
}

TEST_F(HostileInput, Spec2_4_ChunkSetsNeverCompletedExpire) {
  pg_notify_many(ch,
                 {chunk("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 0, 3, "{"),
                  chunk("bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", 1, 2, "}")},
                 1);
  ASSERT_TRUE(eventually(
      [&] {
        auto r = pg_control(ch, "chunks");
        return !r.empty() && r[0]["partials"].size() == 2;
      },
      10));
  // Expiry runs as messages arrive (§2.4): each control request is one, so polling expires.
  EXPECT_TRUE(eventually(
      [&] {
        auto r = pg_control(ch, "chunks");
        return !r.empty() && r[0]["partials"].empty() &&
               r[0]["status"]["timed_out_assemblies"] == 2;
      },
      20))
      << svc->log();
  EXPECT_EQ(metric("dispatcherd_chunk_timeouts_total"), 2);
  still_serving();
}

TEST_F(HostileInput, Spec3_2_GarbageOnTheUnixSocket) {
  std::string sock = svc->dir() + "/d.sock";
  // Binary noise with NULs and newlines in it.
  std::mt19937 rng(7);
  std::string noise;
  for (int i = 0; i < 200000; ++i) noise += static_cast<char>(rng() & 0xff);
  int fd = unix_connect(sock);
  ASSERT_GE(fd, 0);
  write_all(fd, noise);
  ::close(fd);
  // A line above max_socket_line_bytes costs its client the connection.
  fd = unix_connect(sock);
  ASSERT_GE(fd, 0);
  write_all(fd, std::string(300000, 'x'));
  EXPECT_EQ(read_line(fd, 10), std::nullopt);  // closed by the service
  ::close(fd);
  // More clients than allowed: the extra ones are turned away, the service carries on.
  std::vector<int> fds;
  for (int i = 0; i < 40; ++i) fds.push_back(unix_connect(sock));
  for (int f : fds)
    if (f >= 0) ::close(f);
  ASSERT_TRUE(eventually(
      [&] {
        auto r = pg_control(ch, "producers");
        if (r.empty()) return false;
        for (auto& [k, v] : r[0].items())
          if (v.contains("oversized_lines"))
            return v["oversized_lines"].get<int>() >= 1 && v["rejected_clients"].get<int>() >= 1;
        return false;
      },
      20))
      << pg_control(ch, "producers")[0].dump();
  auto alive = socket_request(R"({"control": "alive", "reply_to": "me"})");
  ASSERT_TRUE(alive.has_value()) << svc->log();
  EXPECT_EQ(nlohmann::json::parse(*alive)["node_id"], "e2e-hostile");
  still_serving();
}

TEST_F(HostileInput, Spec10_GarbageOnTheMetricsPort) {
  std::mt19937 rng(9);
  std::string noise;
  for (int i = 0; i < 20000; ++i) noise += static_cast<char>(rng() & 0xff);
  tcp_exchange(port, noise, 3);
  EXPECT_NE(tcp_exchange(port, "GET\r\n\r\n").find(" 400 "), std::string::npos);
  EXPECT_NE(
      tcp_exchange(port, "GET /metrics HTTP/1.1\r\nX: " + std::string(20000, 'h') + "\r\n\r\n")
          .find(" 400 "),
      std::string::npos);
  EXPECT_NE(tcp_exchange(port, "POST /metrics HTTP/1.1\r\n\r\n").find(" 404 "), std::string::npos);
  EXPECT_NE(tcp_exchange(port, "GET /metrics\xff\xfe HTTP/1.1\r\n\r\n").find(" 400 "),
            std::string::npos);
  tcp_exchange(port, "GET /metr", 0.2);  // EOF mid request line
  std::string text = fetch_metrics(port);
  ASSERT_FALSE(text.empty()) << svc->log();
  auto r = pg_control(ch, "metrics");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_GE(r[0]["status"]["http_server"].value("bad_requests", 0), 3) << r[0].dump();
  still_serving();
}

}  // namespace
}  // namespace dispatcherd::testing
