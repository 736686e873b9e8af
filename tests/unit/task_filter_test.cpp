// TaskFilter (upstream-spec §4.4 "Task filter"): truthy filter values must equal the message's.

#include <gtest/gtest.h>

#include "dispatcherd/control/control_view.h"

namespace dispatcherd {
namespace {

using nlohmann::json;

const json kMessage = {{"task", "demo.sleep"},
                       {"uuid", "u1"},
                       {"args", json::array({1, 2})},
                       {"kwargs", {{"k", "v"}}},
                       {"channel", "0"}};

TEST(TaskFilter, Spec4_4_EmptyFilterMatchesEverything) {
  TaskFilter f = TaskFilter::from(json::object());
  EXPECT_TRUE(f.matches(kMessage));
  EXPECT_TRUE(f.matches(json::object()));
}

TEST(TaskFilter, Spec4_4_EachKeyMustBeEqual) {
  EXPECT_TRUE(TaskFilter::from({{"uuid", "u1"}}).matches(kMessage));
  EXPECT_FALSE(TaskFilter::from({{"uuid", "u2"}}).matches(kMessage));
  EXPECT_TRUE(TaskFilter::from({{"task", "demo.sleep"}, {"uuid", "u1"}}).matches(kMessage));
  EXPECT_FALSE(TaskFilter::from({{"task", "demo.sleep"}, {"uuid", "u2"}}).matches(kMessage));
  EXPECT_TRUE(TaskFilter::from({{"args", json::array({1, 2})}}).matches(kMessage));
  EXPECT_FALSE(TaskFilter::from({{"args", json::array({2, 1})}}).matches(kMessage));
  EXPECT_TRUE(TaskFilter::from({{"kwargs", {{"k", "v"}}}}).matches(kMessage));
  EXPECT_FALSE(TaskFilter::from({{"kwargs", {{"k", "w"}}}}).matches(kMessage));
}

TEST(TaskFilter, Spec4_4_FalsyValuesAndOtherKeysAreIgnored) {
  TaskFilter f = TaskFilter::from({{"uuid", ""},
                                   {"task", nullptr},
                                   {"args", json::array()},
                                   {"kwargs", json::object()},
                                   {"channel", "nope"},
                                   {"limit", 3}});
  EXPECT_TRUE(f.uuid.is_null());
  EXPECT_TRUE(f.task.is_null());
  EXPECT_TRUE(f.args.is_null());
  EXPECT_TRUE(f.kwargs.is_null());
  EXPECT_TRUE(f.matches(kMessage));
  EXPECT_TRUE(TaskFilter::from({{"uuid", false}}).matches(kMessage));
  EXPECT_TRUE(TaskFilter::from({{"uuid", 0}}).matches(kMessage));
}

TEST(TaskFilter, Spec4_4_MissingKeyNeverMatchesATruthyValue) {
  json no_args = {{"task", "demo.sleep"}, {"uuid", "u1"}};
  EXPECT_FALSE(TaskFilter::from({{"args", json::array({1})}}).matches(no_args));
  EXPECT_FALSE(TaskFilter::from({{"uuid", "u1"}}).matches(json::array()));
}

TEST(TaskFilter, Spec4_4_MayMatchRulesOutOnlyWhatMatchesWouldRefuse) {
  auto f = TaskFilter::from(json{{"task", "a.b"}, {"uuid", "u1"}});
  EXPECT_TRUE(f.may_match("a.b", "u1"));
  EXPECT_FALSE(f.may_match("a.c", "u1"));
  EXPECT_FALSE(f.may_match("a.b", "u2"));
  // args/kwargs are left to matches().
  auto by_args = TaskFilter::from(json{{"args", {1}}});
  EXPECT_TRUE(by_args.may_match("anything", "any"));
  // A non-string task filter can never equal a message's task name.
  auto numeric = TaskFilter::from(json{{"task", 5}});
  EXPECT_FALSE(numeric.may_match("5", "u"));
  EXPECT_FALSE(numeric.matches(json{{"task", "5"}, {"uuid", "u"}}));
  EXPECT_TRUE(TaskFilter::from(json::object()).may_match("", ""));
}

TEST(TaskFilter, NonObjectControlDataFiltersNothing) {
  EXPECT_TRUE(TaskFilter::from(json::array({"uuid", "x"})).matches(kMessage));
  EXPECT_TRUE(TaskFilter::from(json("u1")).matches(kMessage));
}

}  // namespace
}  // namespace dispatcherd
