// Task-library path resolution, DlHandle and the thread count (dispatcherd/task_libraries.h).
// Loading real libraries is covered end to end in tests/e2e/task_libraries_test.cpp.
#include "dispatcherd/task_libraries.h"

#include <dlfcn.h>
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

namespace dispatcherd {
namespace {

TEST(TaskLibraryLoader, AbsolutePathIsKept) {
  EXPECT_EQ(resolve_task_library_path("/usr/lib/x/libt.so", "/etc/dispatcherd/d.yml"),
            "/usr/lib/x/libt.so");
  EXPECT_EQ(resolve_task_library_path("/usr/lib/../lib/libt.so", "d.yml"), "/usr/lib/libt.so");
}

TEST(TaskLibraryLoader, RelativePathStartsAtTheConfigFilesDirectory) {
  EXPECT_EQ(resolve_task_library_path("libt.so", "/etc/dispatcherd/d.yml"),
            "/etc/dispatcherd/libt.so");
  EXPECT_EQ(resolve_task_library_path("./lib/libt.so", "/etc/dispatcherd/d.yml"),
            "/etc/dispatcherd/lib/libt.so");
  EXPECT_EQ(resolve_task_library_path("../libt.so", "conf/d.yml"), "./libt.so");
}

TEST(TaskLibraryLoader, ResolvedPathAlwaysHasASlashSoDlopenNeverSearches) {
  EXPECT_EQ(resolve_task_library_path("libt.so", "d.yml"), "./libt.so");
  EXPECT_EQ(resolve_task_library_path("./libt.so", "d.yml"), "./libt.so");
  EXPECT_EQ(resolve_task_library_path("sub/libt.so", "d.yml"), "sub/libt.so");
}

TEST(TaskLibraryLoader, ThreadCountSeesANewThread) {
  int before = process_thread_count();
  ASSERT_GE(before, 1);
  std::thread t([] { std::this_thread::sleep_for(std::chrono::milliseconds(200)); });
  EXPECT_EQ(process_thread_count(), before + 1);
  t.join();
}

TEST(TaskLibraryLoader, DlHandleClosesAndMoves) {
  // libc is always loaded: dlopen only takes a reference, which the handle gives back.
  DlHandle a(::dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD));
  ASSERT_TRUE(a);
  void* raw = a.get();
  DlHandle b(std::move(a));
  EXPECT_FALSE(a);  // NOLINT(bugprone-use-after-move): moved-from is documented as empty
  EXPECT_EQ(b.get(), raw);
  b.reset();
  EXPECT_FALSE(b);
}

}  // namespace
}  // namespace dispatcherd
