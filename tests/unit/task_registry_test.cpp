// The task registry, TaskContext and worker hooks (common/include/dispatcherd/task.h).
#include <gtest/gtest.h>

#include <algorithm>
#include <stdexcept>

#include "dispatcherd/log.h"
#include "dispatcherd/task.h"
#include "dispatcherd/worker/builtin_tasks.h"

namespace dispatcherd {
namespace {

using nlohmann::json;

json registry_test_a(TaskContext&) {
  return 1;
}
json registry_test_b(TaskContext&) {
  return 2;
}

DISPATCHERD_TASK("tests.registry.a", registry_test_a);

TEST(Registry, FindsARegisteredTask) {
  const TaskEntry* e = find_task("tests.registry.a");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->name, "tests.registry.a");
  EXPECT_EQ(e->fn, &registry_test_a);
  EXPECT_EQ(find_task("tests.registry.missing"), nullptr);
}

TEST(Registry, RefusesADuplicateName) {
  log::set_level(log::Level::Critical);  // the refusal logs an error; keep the output clean
  EXPECT_FALSE(register_task("tests.registry.a", registry_test_b));
  log::set_level(log::Level::Info);
  EXPECT_EQ(find_task("tests.registry.a")->fn, &registry_test_a);
}

TEST(Registry, RefusesAnEmptyName) {
  log::set_level(log::Level::Critical);
  EXPECT_FALSE(register_task("", registry_test_b));
  EXPECT_FALSE(register_task("tests.registry.null", nullptr));
  log::set_level(log::Level::Info);
}

TEST(Registry, NamesAreSortedAndIncludeTheBuiltins) {
  ASSERT_STRNE(worker::kSelfCheckTaskName, "");  // links the built-in tasks in
  auto names = registered_task_names();
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
  for (const char* n :
       {"dispatcherd.builtin.noop", "dispatcherd.builtin.sleep", "dispatcherd.builtin.echo",
        "dispatcherd.builtin.fail", "dispatcherd.builtin.record", "dispatcherd.builtin.crash",
        "dispatcherd.builtin.exit", "dispatcherd.builtin.self_check", "tests.registry.a"})
    EXPECT_NE(std::find(names.begin(), names.end(), n), names.end()) << n;
}

TEST(Registry, ContextDefaultsArgsAndKwargs) {
  json msg{{"task", "x"}};
  TaskContext ctx(msg, "u", 4, nullptr, nullptr);
  EXPECT_EQ(ctx.args(), json::array());
  EXPECT_EQ(ctx.kwargs(), json::object());
  EXPECT_EQ(ctx.uuid(), "u");
  EXPECT_EQ(ctx.worker_id(), 4);
  EXPECT_EQ(&ctx.message(), &msg);
  EXPECT_FALSE(ctx.cancelled());
}

TEST(Registry, ContextExposesArgsKwargsAndTheCancelFlag) {
  json msg{{"task", "x"}, {"args", {1, 2}}, {"kwargs", {{"k", "v"}}}};
  volatile int flag = 0;
  TaskContext ctx(msg, "u", 0, &flag, nullptr);
  EXPECT_EQ(ctx.args(), json({1, 2}));
  EXPECT_EQ(ctx.kwargs(), json({{"k", "v"}}));
  EXPECT_NO_THROW(ctx.check_cancelled());
  flag = 1;
  EXPECT_TRUE(ctx.cancelled());
  EXPECT_THROW(ctx.check_cancelled(), TaskCancelled);
}

TEST(Registry, Design10_ContextOverMessageTextParsesItOnceWithUuidAndChannelSet) {
  const std::string body = R"({"task": "x", "uuid": "old", "args": [1], "kwargs": {"k": 2}})";
  TaskInput text(body, "new", "chan");
  TaskContext ctx(text, "new", 0, nullptr, nullptr);
  EXPECT_EQ(ctx.args(), json({1}));
  EXPECT_EQ(ctx.kwargs(), json({{"k", 2}}));
  EXPECT_EQ(ctx.message()["uuid"], "new");
  EXPECT_EQ(ctx.message()["channel"], "chan");
  EXPECT_EQ(&ctx.message(), &text.get());  // parsed once, kept
  TaskInput no_extra(body, "", "");
  EXPECT_EQ(no_extra.get()["uuid"], "old");
  EXPECT_FALSE(no_extra.get().contains("channel"));
  TaskInput not_object("[1]", "", "");
  TaskContext defaults(not_object, "u", 0, nullptr, nullptr);
  EXPECT_EQ(defaults.args(), json::array());
  EXPECT_EQ(defaults.kwargs(), json::object());
}

TEST(Registry, ControlWithoutAControlFunctionThrows) {
  json msg = json::object();
  TaskContext ctx(msg, "u", 0, nullptr, nullptr);
  try {
    ctx.control("running");
    FAIL() << "expected a throw";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "control is not available");
  }
}

TEST(Registry, ControlCallsTheControlFunction) {
  json msg = json::object();
  TaskContext ctx(msg, "u", 0, nullptr, [](const std::string& c, const json& d) {
    return json{{"command", c}, {"data", d}};
  });
  EXPECT_EQ(ctx.control("alive", {{"x", 1}}), json({{"command", "alive"}, {"data", {{"x", 1}}}}));
}

TEST(Registry, WorkerHooksAreReplaced) {
  int started = 0;
  WorkerHooks h;
  h.on_start = [&](int id) { started = id; };
  set_worker_hooks(h);
  ASSERT_TRUE(worker_hooks().on_start);
  worker_hooks().on_start(5);
  EXPECT_EQ(started, 5);
  set_worker_hooks({});
  EXPECT_FALSE(worker_hooks().on_start);
}

TEST(Builtin, SelfCheckResultIsTheQuotedBrokerId) {
  EXPECT_EQ(worker::self_check_result(R"(lambda: "broker_ab_cd")"), "broker_ab_cd");
  EXPECT_EQ(worker::self_check_result("no quotes"), "no quotes");
  EXPECT_EQ(worker::self_check_result(R"(one " quote)"), R"(one " quote)");
}

TEST(Builtin, CancellableSleepReturnsAfterItsTime) {
  json msg = json::object();
  volatile int flag = 0;
  TaskContext ctx(msg, "u", 0, &flag, nullptr);
  timespec a{}, b{};
  clock_gettime(CLOCK_MONOTONIC, &a);
  worker::cancellable_sleep(ctx, 0.02);
  clock_gettime(CLOCK_MONOTONIC, &b);
  double took =
      static_cast<double>(b.tv_sec - a.tv_sec) + static_cast<double>(b.tv_nsec - a.tv_nsec) / 1e9;
  EXPECT_GE(took, 0.02);
  EXPECT_LT(took, 1.0);
}

TEST(Builtin, CancellableSleepThrowsWhenAlreadyCancelledUnlessIgnored) {
  json msg = json::object();
  volatile int flag = 1;
  TaskContext ctx(msg, "u", 0, &flag, nullptr);
  EXPECT_THROW(worker::cancellable_sleep(ctx, 10), TaskCancelled);
  EXPECT_NO_THROW(worker::cancellable_sleep(ctx, 0.001, /*ignore_cancel=*/true));
}

}  // namespace
}  // namespace dispatcherd
