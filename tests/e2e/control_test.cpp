// End to end: control commands through the built dispatcherctl, over the Unix socket and
// over pg_notify, as an operator runs them.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <memory>
#include <string>

#include "pg_test_env.h"
#include "service_process.h"

namespace dispatcherd::testing {
namespace {

std::string config(const std::string& ch, const std::string& node) {
  return R"(version: 2
service:
  pool_kwargs: {min_workers: 1, max_workers: 2}
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
  ControlProducer:
publish:
  default_broker: pg_notify
  default_control_broker: socket
)";
}

// Runs dispatcherctl with `args`; returns (exit code, stdout).
std::pair<int, std::string> ctl(const std::string& args) {
  // A generous reply timeout: ctest runs e2e tests side by side (one floods Postgres with
  // 100k notifications), and this checks what is answered, not how fast.
  std::string cmd = test_path("DISPATCHERCTL_BIN") + " --timeout 5 " + args + " 2>/dev/null";
  std::unique_ptr<FILE, decltype(&pclose)> p(popen(cmd.c_str(), "r"), &pclose);
  std::string out;
  std::array<char, 4096> buf{};
  std::size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p.get())) > 0) out.append(buf.data(), n);
  int st = pclose(p.release());
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

// A dispatcherctl config that talks pg_notify on `ch`.
std::string pg_client_config(const ServiceProcess& svc, const std::string& ch) {
  std::string path = svc.dir() + "/ctl-pg.yml";
  FILE* f = std::fopen(path.c_str(), "w");
  std::fprintf(f,
               "version: 2\nbrokers:\n  pg_notify:\n    config: {conninfo: \"%s\"}\n"
               "    channels: [\"%s\"]\n    default_publish_channel: \"%s\"\n",
               pg_dsn().c_str(), ch.c_str(), ch.c_str());
  std::fclose(f);
  return path;
}

TEST(Control, Spec3_2_AliveOverTheSocketAnswersOnTheSameConnection) {
  REQUIRE_PG();
  std::string ch = unique_channel("ctl");
  ServiceProcess svc(config(ch, "node-sock"));
  ASSERT_TRUE(svc.start());
  ASSERT_TRUE(svc.wait_for_log("pg_notify connection established")) << svc.log();
  auto [rc, out] = ctl("alive --config " + svc.dir() + "/dispatcher.yml");
  EXPECT_EQ(rc, 0) << out << svc.log();
  EXPECT_EQ(out, "- node_id: node-sock\n\n");
}

TEST(Control, Spec4_4_RunningAndCancelOverPgNotify) {
  REQUIRE_PG();
  std::string ch = unique_channel("ctl");
  ServiceProcess svc(config(ch, "node-pg"));
  ASSERT_TRUE(svc.start());
  ASSERT_TRUE(svc.wait_for_log("pg_notify connection established")) << svc.log();
  std::string cfg = pg_client_config(svc, ch);
  pg_notify(ch, R"({"task": "dispatcherd.builtin.sleep", "uuid": "find_me", "args": [30]})");
  ASSERT_TRUE(eventually(
      [&] {
        return ctl("running --json --config " + cfg).second.find("find_me") != std::string::npos;
      },
      30))
      << svc.log();
  auto [rc, out] = ctl("cancel --uuid find_me --json --config " + cfg);
  EXPECT_EQ(rc, 0);
  auto replies = nlohmann::json::parse(out);
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0]["worker-0"]["uuid"], "find_me") << out;
  EXPECT_EQ(replies[0]["worker-0"]["channel"], ch) << out;
  ASSERT_TRUE(eventually(
      [&] {
        auto r =
            nlohmann::json::parse(ctl("running --json --config " + cfg).second, nullptr, false);
        return r.is_array() && r.size() == 1 && r[0].size() == 1;  // only node_id left
      },
      10))
      << svc.log();
}

TEST(Control, Spec4_4_SetLogLevelErrorsAndUnknownCommand) {
  REQUIRE_PG();
  std::string ch = unique_channel("ctl");
  ServiceProcess svc(config(ch, "node-lvl"));
  ASSERT_TRUE(svc.start());
  ASSERT_TRUE(svc.wait_for_log("pg_notify connection established")) << svc.log();
  auto r = pg_control(ch, "set_log_level", {{"level", "bogus"}});
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0]["error"], "Unknown log level 'bogus'.");
  r = pg_control(ch, "set_log_level", {{"level", true}});
  EXPECT_EQ(r[0]["error"], "Log level must be provided as a string or int via the \"level\" key.");
  r = pg_control(ch, "set_log_level", {{"level", "debug"}});
  EXPECT_EQ(r[0]["level"], "DEBUG");
  EXPECT_EQ(r[0]["previous_level"], "NOTSET");
  r = pg_control(ch, "not-a-command");
  EXPECT_EQ(r[0]["error"], "No control method not-a-command");
  EXPECT_EQ(r[0]["node_id"], "node-lvl");
  r = pg_control(ch, "run", {{"task", "dispatcherd.builtin.noop"}, {"uuid", "via-run"}});
  EXPECT_EQ(r[0]["ack"]["uuid"], "via-run") << r[0].dump();
}

TEST(Control, Spec4_2_TwoServicesAnswerOneAliveWithTwoExpectedReplies) {
  REQUIRE_PG();
  std::string ch = unique_channel("two");
  ServiceProcess a(config(ch, "node-a")), b(config(ch, "node-b"));
  ASSERT_TRUE(a.start());
  ASSERT_TRUE(b.start());
  ASSERT_TRUE(a.wait_for_log("pg_notify connection established")) << a.log();
  ASSERT_TRUE(b.wait_for_log("pg_notify connection established")) << b.log();
  std::string cfg = pg_client_config(a, ch);
  auto [rc, out] = ctl("alive --expected-replies 2 --json --config " + cfg);
  EXPECT_EQ(rc, 0) << out;
  auto replies = nlohmann::json::parse(out);
  ASSERT_EQ(replies.size(), 2u);
  std::set<std::string> nodes = {replies[0]["node_id"], replies[1]["node_id"]};
  EXPECT_EQ(nodes, (std::set<std::string>{"node-a", "node-b"}));
  auto [rc1, out1] = ctl("alive --expected-replies 3 --timeout 2 --json --config " + cfg);
  EXPECT_EQ(rc1, 1);
  EXPECT_EQ(nlohmann::json::parse(out1).size(), 2u);
}

// dispatcherctl loads libpq with dlopen only when it talks pg_notify (libpq_api.h): linked,
// libpq and the ~25 libraries it needs (krb5, ldap, gnutls...) cost every start ~10 M
// instructions of relocation, --help and socket commands included. ldd lists what the
// dynamic linker loads at start, transitively.
void expect_no_libpq_at_start(const char* binary) {
  const std::string cmd = "ldd " + test_path(binary) + " 2>&1";
  std::unique_ptr<FILE, decltype(&pclose)> p(popen(cmd.c_str(), "r"), &pclose);
  ASSERT_TRUE(p);
  std::string out;
  std::array<char, 4096> buf{};
  std::size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p.get())) > 0) out.append(buf.data(), n);
  const int st = pclose(p.release());
  if (!WIFEXITED(st) || WEXITSTATUS(st) == 127) GTEST_SKIP() << "no ldd: " << out;
  ASSERT_NE(out.find("libc.so"), std::string::npos) << out;  // ldd did list libraries
  EXPECT_EQ(out.find("libpq"), std::string::npos) << out;
}

TEST(Control, DispatcherctlDoesNotLoadLibpqAtStart) {
  expect_no_libpq_at_start("DISPATCHERCTL_BIN");
}

// The service too (its broker calls libpq through the same table): ~17 ms of every start,
// on the way to the first on-start task, even with only the socket broker.
TEST(Control, DispatcherdDoesNotLoadLibpqAtStart) {
  expect_no_libpq_at_start("DISPATCHERD_BIN");
}

}  // namespace
}  // namespace dispatcherd::testing
