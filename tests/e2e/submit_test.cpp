// End to end: `dispatcherctl submit` (the Publisher underneath) against the stock dispatcherd,
// as a user publishes from the shell: a --count burst runs every task exactly once, and a
// 100 kB argument travels as v1 chunks and reaches the task byte for byte.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "pg_test_env.h"
#include "service_process.h"

namespace dispatcherd::testing {
namespace {

using nlohmann::json;

std::string config_for(const std::string& ch, const std::string& extra = "") {
  return R"(version: 2
service:
  pool_kwargs: {min_workers: 2, max_workers: 4}
  main_kwargs: {node_id: e2e-submit}
brokers:
  pg_notify:
    config: {conninfo: "{DSN} application_name=e2e_submit"}
    channels: [")" +
         ch + R"("]
    default_publish_channel: ")" +
         ch + R"("
    max_connection_idle_seconds: null
    max_self_check_message_age_seconds: null
extensions:
  shutdown_timeout_seconds: 5
)" + extra;
}

struct CtlRun {
  int exit_code = -1;
  std::string output;  ///< stdout and stderr together
};

// Runs dispatcherctl with `args` as its argv (no shell: an argument may be 100 kB, more than a
// `sh -c` command line can carry whole).
CtlRun run_ctl(const std::string& dir, const std::vector<std::string>& args) {
  const std::string bin = test_path("DISPATCHERCTL_BIN");
  const std::string out_path = dir + "/ctl.out";
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(bin.c_str()));
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int fd = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) ::_exit(126);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    ::execv(bin.c_str(), argv.data());
    ::_exit(127);
  }
  CtlRun r;
  int status = 0;
  if (pid > 0 && ::waitpid(pid, &status, 0) == pid && WIFEXITED(status))
    r.exit_code = WEXITSTATUS(status);
  std::ifstream in(out_path);
  std::stringstream ss;
  ss << in.rdbuf();
  r.output = ss.str();
  return r;
}

json main_status(const std::string& channel) {
  auto r = pg_control(channel, "main");
  return r.empty() ? json() : r[0];
}

TEST(Submit, Spec11_2_CountThousandRunsEveryTaskExactlyOnce) {
  REQUIRE_PG();
  const std::string ch = unique_channel("submit_count");
  ServiceProcess svc(config_for(ch));
  ASSERT_TRUE(svc.start());
  ASSERT_TRUE(svc.wait_for_log("pg_notify connection established")) << svc.log();
  const std::string path = svc.dir() + "/record.txt";
  CtlRun r = run_ctl(
      svc.dir(), {"submit", "dispatcherd.builtin.record", "--config", svc.dir() + "/dispatcher.yml",
                  "--kwargs", json{{"path", path}}.dump(), "--count", "1000"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, "submitted 1000 task(s) to " + ch + "\n");

  ASSERT_TRUE(eventually([&] { return read_lines(path).size() >= 1000; }, 60)) << svc.log();
  ASSERT_TRUE(eventually([&] { return main_status(ch)["pool"]["finished_count"] == 1000; }, 30))
      << main_status(ch).dump();
  const auto lines = read_lines(path);
  EXPECT_EQ(lines.size(), 1000u);
  const std::set<std::string> uuids(lines.begin(), lines.end());
  EXPECT_EQ(uuids.size(), 1000u);  // each generated uuid ran once
  for (const std::string& u : uuids) {
    ASSERT_EQ(u.size(), 36u) << u;
    EXPECT_EQ(u[14], '4') << u;  // uuid4
  }
}

TEST(Submit, Spec11_2_UuidAndQueueOptionsReachTheService) {
  REQUIRE_PG();
  const std::string ch = unique_channel("submit_opts");
  ServiceProcess svc(config_for(ch));
  ASSERT_TRUE(svc.start());
  ASSERT_TRUE(svc.wait_for_log("pg_notify connection established")) << svc.log();
  const std::string path = svc.dir() + "/record.txt";
  // Every option of submit, --queue naming the channel explicitly.
  CtlRun r = run_ctl(
      svc.dir(), {"submit", "dispatcherd.builtin.record", "--config", svc.dir() + "/dispatcher.yml",
                  "--queue", ch, "--uuid", "fixed", "--count", "3", "--kwargs",
                  json{{"path", path}}.dump(), "--timeout", "30", "--on-duplicate", "parallel"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_TRUE(eventually([&] { return read_lines(path).size() >= 3; }, 30)) << svc.log();
  const auto lines = read_lines(path);
  EXPECT_EQ(std::set<std::string>(lines.begin(), lines.end()),
            (std::set<std::string>{"fixed-0", "fixed-1", "fixed-2"}));
}

TEST(Submit, Spec2_4_HundredKilobyteArgumentArrivesIntact) {
  REQUIRE_PG();
  const std::string ch = unique_channel("submit_big");
  // A command task gets the whole reassembled message on stdin; tee stores it for the test.
  ServiceProcess svc(config_for(ch, R"(  tasks:
    e2e.save:
      command: [tee, "{path}"]
)"));
  ASSERT_TRUE(svc.start());
  ASSERT_TRUE(svc.wait_for_log("pg_notify connection established")) << svc.log();
  const std::string path = svc.dir() + "/message.json";
  std::string blob;
  while (blob.size() < 100 * 1024) blob += "chunk \"quoted\" \\ caf\u00e9 \U0001F525 ";
  CtlRun r =
      run_ctl(svc.dir(), {"submit", "e2e.save", "--config", svc.dir() + "/dispatcher.yml", "--uuid",
                          "big-1", "--kwargs", json{{"path", path}, {"blob", blob}}.dump()});
  ASSERT_EQ(r.exit_code, 0) << r.output;

  // finished_count first, so the file is complete when read.
  ASSERT_TRUE(eventually([&] { return main_status(ch)["pool"]["finished_count"] == 1; }, 30))
      << svc.log();
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  const json got = json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(got.is_discarded()) << ss.str().substr(0, 200);
  EXPECT_EQ(got["task"], "e2e.save");
  EXPECT_EQ(got["uuid"], "big-1");
  EXPECT_EQ(got["kwargs"]["blob"], blob);
  EXPECT_EQ(got["channel"], ch);

  auto chunks = pg_control(ch, "chunks");
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunks[0]["status"]["successful_assemblies"], 1) << chunks[0].dump();
  EXPECT_GT(chunks[0]["status"]["total_chunks_received"].get<int>(), 13) << chunks[0].dump();
}

}  // namespace
}  // namespace dispatcherd::testing
