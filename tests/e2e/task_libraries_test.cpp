// End to end: extensions.task_libraries (DESIGN section 2). The stock dispatcherd loads the
// example task library (examples/task_library) and runs its task; libraries that are missing,
// built for another ABI, lack the ABI symbol or start a thread at load stop start-up with
// exit 1 and a message naming the file. The broken libraries are tests/e2e/task_libraries/.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <filesystem>
#include <string>

#include "dispatcherd/task.h"
#include "pg_test_env.h"
#include "service_process.h"

namespace dispatcherd::testing {
namespace {

std::string config_with_libraries(const std::string& channel, const std::string& libraries) {
  return R"(version: 2
service:
  pool_kwargs: {min_workers: 1, max_workers: 2}
brokers:
  pg_notify:
    config: {conninfo: "{DSN} application_name=e2e_tasklib"}
    channels: [")" +
         channel + R"("]
extensions:
  task_libraries: )" +
         libraries + "\n";
}

// Runs a service that must refuse to start; returns its log after checking exit status 1.
std::string refused_start(const std::string& libraries, std::vector<std::string> args = {}) {
  ServiceProcess svc(config_with_libraries(unique_channel("tlref"), libraries), std::move(args));
  EXPECT_TRUE(svc.start());
  auto st = svc.wait_exit(20);
  EXPECT_TRUE(st.has_value()) << svc.log();
  if (st) {
    EXPECT_TRUE(WIFEXITED(*st)) << "status " << *st << "\n" << svc.log();
    EXPECT_EQ(WEXITSTATUS(*st), 1) << svc.log();
  }
  return svc.log();
}

std::string required_path(const std::string& key) {
  std::string p = test_path(key);
  if (p.empty()) ADD_FAILURE() << key << " is not in test-paths.env";
  return p;
}

TEST(TaskLibraries, Design2_StockBinaryLoadsLibraryRelativeToConfigAndRunsItsTask) {
  REQUIRE_PG();
  std::string lib = test_path("DISPATCHERD_EXAMPLE_TASK_LIBRARY");
  if (lib.empty()) GTEST_SKIP() << "examples not built (DISPATCHERD_BUILD_EXAMPLES=OFF)";
  std::string ch = unique_channel("tlrun");
  // A relative entry is resolved against the config file's directory, not the cwd.
  ServiceProcess svc(config_with_libraries(ch, "[./libexample_tasks.so]"));
  std::filesystem::copy_file(lib, svc.dir() + "/libexample_tasks.so");
  ASSERT_TRUE(svc.start());
  ASSERT_TRUE(svc.wait_for_log("listening")) << svc.log();
  EXPECT_NE(svc.log().find("Loaded task library " + svc.dir() + "/libexample_tasks.so"),
            std::string::npos)
      << svc.log();

  std::string out = svc.dir() + "/out.txt";
  pg_notify(ch, nlohmann::json{{"task", "example.append_line"},
                               {"uuid", "tl-1"},
                               {"kwargs", {{"path", out}, {"text", "from-library"}}}}
                    .dump());
  ASSERT_TRUE(eventually([&] { return !read_lines(out).empty(); }, 20)) << svc.log();
  EXPECT_EQ(read_lines(out), std::vector<std::string>{"from-library tl-1"});
}

TEST(TaskLibraries, Design2_ListTasksAndCheckConfigLoadTheLibraries) {
  std::string lib = test_path("DISPATCHERD_EXAMPLE_TASK_LIBRARY");
  if (lib.empty()) GTEST_SKIP() << "examples not built (DISPATCHERD_BUILD_EXAMPLES=OFF)";
  ServiceProcess list(config_with_libraries(unique_channel("tllist"), "[" + lib + "]"),
                      {"--list-tasks"});
  ASSERT_TRUE(list.start());
  auto st = list.wait_exit(20);
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(WEXITSTATUS(*st), 0) << list.log();
  EXPECT_NE(list.log().find("example.append_line\nexample.sum\n"), std::string::npos) << list.log();
  EXPECT_NE(list.log().find("dispatcherd.builtin.noop\n"), std::string::npos) << list.log();

  // --check-config fails on a library that --list-tasks or the service would refuse.
  std::string missing = "/nonexistent/dir/libnothere.so";
  std::string log = refused_start("[" + missing + "]", {"--check-config"});
  EXPECT_NE(log.find(missing), std::string::npos) << log;
  EXPECT_EQ(log.find(": OK"), std::string::npos) << log;
}

TEST(TaskLibraries, Design2_MissingLibraryStopsStartupNamingThePath) {
  std::string missing = "/nonexistent/dir/libnothere.so";
  std::string log = refused_start("[" + missing + "]");
  EXPECT_NE(log.find("task library " + missing + ": cannot load"), std::string::npos) << log;
  EXPECT_EQ(log.find("listening"), std::string::npos) << log;
}

TEST(TaskLibraries, Design2_RefusesAbiMismatch) {
  std::string lib = required_path("DISPATCHERD_BAD_ABI_MISMATCH");
  std::string log = refused_start("[" + lib + "]");
  std::string expected = "task library " + lib + ": built for task ABI version " +
                         std::to_string(kTaskAbiVersion + 1) + ", this dispatcherd has version " +
                         std::to_string(kTaskAbiVersion);
  EXPECT_NE(log.find(expected), std::string::npos) << log;
}

TEST(TaskLibraries, Design2_RefusesLibraryWithoutAbiSymbol) {
  std::string lib = required_path("DISPATCHERD_BAD_NO_ABI_SYMBOL");
  std::string log = refused_start("[" + lib + "]");
  EXPECT_NE(log.find("task library " + lib + ": no dispatcherd_task_abi_version symbol"),
            std::string::npos)
      << log;
}

TEST(TaskLibraries, Design2_RefusesLibraryStartingAThread) {
  std::string lib = required_path("DISPATCHERD_BAD_STARTS_THREAD");
  std::string log = refused_start("[" + lib + "]");
  EXPECT_NE(log.find("task library " + lib + ": started a thread while loading (threads 1 -> 2)"),
            std::string::npos)
      << log;
}

}  // namespace
}  // namespace dispatcherd::testing
