// End to end: the installed package (DESIGN section 2, library mode). `cmake --install` this
// build into a fresh prefix, then build examples/app and examples/task_library from outside the
// tree with find_package(dispatcherd) and -DCMAKE_PREFIX_PATH, the way an application would.
// The app runs against the test Postgres and runs its own task, a task of the outside-built
// library and a built-in one; the installed dispatcherd binary lists the library's tasks.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include "pg_test_env.h"
#include "service_process.h"

namespace dispatcherd::testing {
namespace {

namespace fs = std::filesystem;

// Single quotes for sh: the paths used here contain none.
std::string shell_quote(const std::string& s) {
  return "'" + s + "'";
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

// Runs `command` with sh, its output in `log`; true on exit status 0.
bool run(const std::string& command, const std::string& log) {
  int st = std::system(("(" + command + ") >" + shell_quote(log) + " 2>&1").c_str());
  return st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

// Configures and builds the example project `name` against the package in `prefix`.
bool build_example(const std::string& name, const std::string& prefix, const std::string& build,
                   const std::string& log) {
  std::string cmake = test_path("DISPATCHERD_CMAKE");
  std::string configure = shell_quote(cmake) + " -S " +
                          shell_quote(test_path("DISPATCHERD_SOURCE_DIR") + "/examples/" + name) +
                          " -B " + shell_quote(build) +
                          " -DCMAKE_PREFIX_PATH=" + shell_quote(prefix) +
                          " -DCMAKE_CXX_COMPILER=" + shell_quote(test_path("DISPATCHERD_CXX"));
  if (std::string launcher = test_path("DISPATCHERD_CXX_LAUNCHER"); !launcher.empty())
    configure += " -DCMAKE_CXX_COMPILER_LAUNCHER=" + shell_quote(launcher);
  if (std::string flags = test_path("DISPATCHERD_SANITIZE_FLAGS"); !flags.empty())
    for (const char* var :
         {"CMAKE_CXX_FLAGS", "CMAKE_EXE_LINKER_FLAGS", "CMAKE_MODULE_LINKER_FLAGS"})
      configure += std::string(" -D") + var + "=" + shell_quote(flags);
  return run(configure + " && " + shell_quote(cmake) + " --build " + shell_quote(build), log);
}

std::set<std::string> files_under(const fs::path& dir) {
  std::set<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) out.insert(fs::relative(e.path(), dir).string());
  return out;
}

TEST(LibraryMode, Design2_InstalledPackageBuildsAnAppAndATaskLibraryThatRun) {
  REQUIRE_PG();
  // A fixed place in the build tree, wiped first: reruns start clean, and ccache sees the same
  // paths each time.
  fs::path work = fs::path(test_path("DISPATCHERD_BUILD_DIR")) / "library-mode-test";
  fs::remove_all(work);
  fs::create_directories(work);
  // The install is ~250 MB with debug info: keep it only when the test failed, to look into.
  struct RemoveOnSuccess {
    fs::path dir;
    ~RemoveOnSuccess() {
      if (!::testing::Test::HasFailure()) fs::remove_all(dir);
    }
  } cleanup{work};  // declared before the service below, so destroyed after it has stopped
  std::string prefix = (work / "prefix").string();
  std::string log = (work / "install.log").string();

  ASSERT_TRUE(run(shell_quote(test_path("DISPATCHERD_CMAKE")) + " --install " +
                      shell_quote(test_path("DISPATCHERD_BUILD_DIR")) + " --prefix " +
                      shell_quote(prefix),
                  log))
      << slurp(log);
  // Only the public header is installed: it must compile without the private ones.
  EXPECT_EQ(files_under(fs::path(prefix) / "include"), std::set<std::string>{"dispatcherd/task.h"});
  for (const char* f : {"bin/dispatcherd", "bin/dispatcherctl", "lib/libdispatcherd.a",
                        "lib/cmake/dispatcherd/dispatcherdConfig.cmake",
                        "lib/cmake/dispatcherd/dispatcherdConfigVersion.cmake",
                        "lib/cmake/dispatcherd/dispatcherdTargets.cmake"})
    EXPECT_TRUE(fs::exists(fs::path(prefix) / f)) << f;

  std::string app_build = (work / "app").string();
  std::string lib_build = (work / "task_library").string();
  log = (work / "build-app.log").string();
  ASSERT_TRUE(build_example("app", prefix, app_build, log)) << slurp(log);
  log = (work / "build-task_library.log").string();
  ASSERT_TRUE(build_example("task_library", prefix, lib_build, log)) << slurp(log);
  std::string task_lib = lib_build + "/libexample_tasks.so";

  // The installed stock binary loads the outside-built library (its tasks bind to the
  // registry the binary exports).
  std::string cfg = (work / "list.yml").string();
  std::ofstream(cfg) << "version: 2\nextensions:\n  task_libraries: [" << task_lib << "]\n";
  log = (work / "list-tasks.log").string();
  ASSERT_TRUE(run(
      shell_quote(prefix + "/bin/dispatcherd") + " --config " + shell_quote(cfg) + " --list-tasks",
      log))
      << slurp(log);
  EXPECT_NE(slurp(log).find("example.append_line\n"), std::string::npos) << slurp(log);

  // The app in library mode: its own tasks, the built-ins (whole-archive) and a task library.
  std::string ch = unique_channel("libmode");
  ServiceProcess svc(R"(version: 2
service:
  pool_kwargs: {min_workers: 1, max_workers: 2}
brokers:
  pg_notify:
    config: {conninfo: "{DSN} application_name=e2e_libmode"}
    channels: [")" + ch +
                     R"("]
extensions:
  task_libraries: [)" +
                     task_lib + "]\n");
  svc.set_command({app_build + "/dispatcherd_example_app"});
  ASSERT_TRUE(svc.start());
  ASSERT_TRUE(svc.wait_for_log("listening")) << svc.log();
  std::string touched = svc.dir() + "/touched.txt";
  std::string appended = svc.dir() + "/appended.txt";
  std::string recorded = svc.dir() + "/recorded.txt";
  pg_notify(ch, nlohmann::json{{"task", "wiki.touch"},
                               {"uuid", "lm-app"},
                               {"kwargs", {{"path", touched}, {"wiki", "enwiki"}}}}
                    .dump());
  pg_notify(ch, nlohmann::json{{"task", "example.append_line"},
                               {"uuid", "lm-lib"},
                               {"kwargs", {{"path", appended}, {"text", "x"}}}}
                    .dump());
  pg_notify(ch, nlohmann::json{{"task", "dispatcherd.builtin.record"},
                               {"uuid", "lm-builtin"},
                               {"kwargs", {{"path", recorded}}}}
                    .dump());
  ASSERT_TRUE(eventually(
      [&] {
        return !read_lines(touched).empty() && !read_lines(appended).empty() &&
               !read_lines(recorded).empty();
      },
      20))
      << svc.log();
  EXPECT_EQ(read_lines(touched), std::vector<std::string>{"enwiki lm-app"});
  EXPECT_EQ(read_lines(appended), std::vector<std::string>{"x lm-lib"});
  EXPECT_EQ(read_lines(recorded), std::vector<std::string>{"lm-builtin"});
}

}  // namespace
}  // namespace dispatcherd::testing
