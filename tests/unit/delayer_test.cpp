// Delayer: due ordering, take_due boundaries, the bound, cancel and shutdown
// (upstream-spec §8.2, §4.4, §7.8; DESIGN §8).

#include "dispatcherd/processors/delayer.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace dispatcherd {
namespace {

QueuedTask task(std::string uuid) {
  return QueuedTask(R"({"task": "t", "uuid": ")" + uuid + R"("})", uuid, "", "t");
}

std::vector<std::string> uuids(const std::vector<Delayed>& items) {
  std::vector<std::string> out;
  for (const auto& d : items) out.emplace_back(d.message.uuid());
  return out;
}

std::vector<std::string> listed(const Delayer& d) {
  std::vector<std::string> out;
  d.for_each([&](const Delayed& x) { out.emplace_back(x.message.uuid()); });
  return out;
}

TEST(Delayer, Spec8_2_OrderedByDueThenArrival) {
  Delayer d(100);
  ASSERT_TRUE(d.add(task("c"), 3.0));
  ASSERT_TRUE(d.add(task("a"), 1.0));
  ASSERT_TRUE(d.add(task("b"), 1.0));
  ASSERT_TRUE(d.add(task("d"), 2.0));
  EXPECT_EQ(listed(d), (std::vector<std::string>{"a", "b", "d", "c"}));
  EXPECT_EQ(uuids(d.take_due(10.0)), (std::vector<std::string>{"a", "b", "d", "c"}));
  EXPECT_TRUE(d.empty());
}

TEST(Delayer, Spec8_2_TakeDueIsInclusiveAndLeavesLaterOnes) {
  Delayer d(100);
  ASSERT_TRUE(d.add(task("one"), 1.0));
  ASSERT_TRUE(d.add(task("two"), 2.0));
  EXPECT_TRUE(d.take_due(0.999).empty());
  auto due = d.take_due(1.0);
  ASSERT_EQ(uuids(due), (std::vector<std::string>{"one"}));
  EXPECT_DOUBLE_EQ(due[0].due, 1.0);
  EXPECT_TRUE(d.take_due(1.5).empty());
  EXPECT_EQ(d.size(), 1u);
  EXPECT_EQ(uuids(d.take_due(2.0)), (std::vector<std::string>{"two"}));
  EXPECT_TRUE(d.take_due(1e9).empty());
}

TEST(Delayer, Spec8_2_NextDueTracksEarliest) {
  Delayer d(100);
  EXPECT_FALSE(d.next_due().has_value());
  ASSERT_TRUE(d.add(task("late"), 5.0));
  EXPECT_EQ(d.next_due(), 5.0);
  ASSERT_TRUE(d.add(task("early"), 2.5));
  EXPECT_EQ(d.next_due(), 2.5);
  (void)d.take_due(3.0);
  EXPECT_EQ(d.next_due(), 5.0);
  (void)d.take_due(5.0);
  EXPECT_FALSE(d.next_due().has_value());
}

TEST(Delayer, Spec4_1_ControlFlagIsKept) {
  Delayer d(100);
  QueuedTask control(R"({"control": "alive", "delay": 1})", "internal-1", "", "");
  ASSERT_TRUE(d.add(control, 1.0, /*is_control=*/true));
  ASSERT_TRUE(d.add(task("t"), 1.0));
  auto due = d.take_due(1.0);
  ASSERT_EQ(due.size(), 2u);
  EXPECT_TRUE(due[0].is_control);
  EXPECT_EQ(due[0].message.body(), control.body());
  EXPECT_FALSE(due[1].is_control);
}

TEST(Delayer, Design8_FullSetRefusesAndCounts) {
  Delayer d(2);
  EXPECT_TRUE(d.add(task("a"), 1.0));
  EXPECT_TRUE(d.add(task("b"), 2.0));
  EXPECT_FALSE(d.add(task("c"), 0.5));
  EXPECT_FALSE(d.add(task("e"), 3.0));
  EXPECT_EQ(d.counters().overflow, 2u);
  EXPECT_EQ(d.counters().delayed_now, 2u);
  EXPECT_EQ(listed(d), (std::vector<std::string>{"a", "b"}));
  (void)d.take_due(1.0);
  EXPECT_TRUE(d.add(task("f"), 4.0));
  EXPECT_EQ(d.counters().overflow, 2u);

  Delayer none(0);
  EXPECT_FALSE(none.add(task("x"), 1.0));
  EXPECT_EQ(none.counters().overflow, 1u);
  EXPECT_TRUE(none.empty());
}

TEST(Delayer, Spec4_4_CancelRemovesEveryMatch) {
  Delayer d(100);
  ASSERT_TRUE(d.add(task("keep1"), 1.0));
  ASSERT_TRUE(d.add(task("x"), 4.0));
  ASSERT_TRUE(d.add(task("x"), 2.0));
  ASSERT_TRUE(d.add(task("keep2"), 3.0));
  ASSERT_TRUE(d.add(task("x"), 0.5));
  auto removed = d.remove_if([](const Delayed& x) { return x.message.uuid() == "x"; });
  ASSERT_EQ(removed.size(), 3u);
  EXPECT_DOUBLE_EQ(removed[0].due, 0.5);
  EXPECT_DOUBLE_EQ(removed[1].due, 2.0);
  EXPECT_DOUBLE_EQ(removed[2].due, 4.0);
  EXPECT_EQ(listed(d), (std::vector<std::string>{"keep1", "keep2"}));
  EXPECT_EQ(d.next_due(), 1.0);
  // Removed ones never come back.
  EXPECT_EQ(uuids(d.take_due(100.0)), (std::vector<std::string>{"keep1", "keep2"}));
}

TEST(Delayer, Spec7_8_AbandonAllEmptiesInDueOrder) {
  Delayer d(100);
  ASSERT_TRUE(d.add(task("b"), 2.0));
  ASSERT_TRUE(d.add(task("a"), 1.0));
  auto abandoned = d.abandon_all();
  EXPECT_EQ(uuids(abandoned), (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(d.empty());
  EXPECT_FALSE(d.next_due().has_value());
  EXPECT_TRUE(d.take_due(100.0).empty());
  EXPECT_EQ(d.counters().delayed_now, 0u);
  EXPECT_TRUE(d.abandon_all().empty());
}

}  // namespace
}  // namespace dispatcherd
