// Blocker: the on_duplicate rules, the release pass and the bound (upstream-spec §8.1,
// DESIGN §8). The tests play the pool's part by hand: a task that passes is activated, a
// finished one deactivated, released ones activated again as the service does.

#include "dispatcherd/processors/blocker.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "dispatcherd/message.h"

namespace dispatcherd {
namespace {

/// A QueuedTask built from a real message, the way main reads one.
QueuedTask make(const json& msg, std::string uuid) {
  QueuedTask t(dump_compact(msg), uuid, "", msg.value("task", ""));
  t.identity = identity_hash(msg);
  auto fields = read_task_fields(msg);
  EXPECT_TRUE(fields.ok());
  if (fields.ok()) t.on_duplicate = fields->on_duplicate;
  return t;
}

json sleeper(const char* policy) {
  return json{{"task", "lambda: __import__(\"time\").sleep(9)"}, {"on_duplicate", policy}};
}

std::vector<std::string> uuids(const std::vector<QueuedTask>& tasks) {
  std::vector<std::string> out;
  for (const auto& t : tasks) out.emplace_back(t.uuid());
  return out;
}

std::vector<std::string> held_uuids(const Blocker& b) {
  std::vector<std::string> out;
  b.for_each_held([&](const QueuedTask& t) { out.emplace_back(t.uuid()); });
  return out;
}

/// Submits 10 identical messages while the first is still running; returns the decisions.
struct TenResult {
  int passed = 0, held = 0, discarded = 0;
};
TenResult submit_ten(Blocker& b, const json& msg) {
  TenResult r;
  for (int i = 0; i < 10; ++i) {
    QueuedTask t = make(msg, "u" + std::to_string(i));
    const std::uint64_t id = t.identity;
    switch (b.admit(t)) {
      case Blocker::Decision::Pass:
        ++r.passed;
        b.activated(id);
        break;
      case Blocker::Decision::Hold:
        ++r.held;
        break;
      case Blocker::Decision::Discard:
        ++r.discarded;
        break;
    }
  }
  return r;
}

TEST(Blocker, Spec8_1_DiscardKeepsOneOfTen) {
  Blocker b(100);
  TenResult r = submit_ten(b, sleeper("discard"));
  EXPECT_EQ(r.passed, 1);
  EXPECT_EQ(r.held, 0);
  EXPECT_EQ(r.discarded, 9);
  EXPECT_EQ(b.counters().discarded, 9u);
  EXPECT_EQ(b.counters().overflow, 0u);
  EXPECT_EQ(b.counters().held_now, 0u);
}

TEST(Blocker, Spec8_1_SerialHoldsNineAndReleasesOneAtATime) {
  Blocker b(100);
  const json msg = sleeper("serial");
  const std::uint64_t id = identity_hash(msg);
  TenResult r = submit_ten(b, msg);
  EXPECT_EQ(r.passed, 1);
  EXPECT_EQ(r.held, 9);
  EXPECT_EQ(r.discarded, 0);
  EXPECT_EQ(b.counters().held_now, 9u);

  std::vector<std::string> ran = {"u0"};
  for (int round = 0; round < 9; ++round) {
    // The running duplicate is still active: no pass releases anything.
    for (int i = 0; i < 3; ++i) EXPECT_TRUE(b.release().empty());
    b.deactivated(id);  // it finished
    auto released = b.release();
    ASSERT_EQ(released.size(), 1u);
    ran.emplace_back(released[0].uuid());
    b.activated(id);  // queued at the end of the pool's FIFO
  }
  EXPECT_TRUE(b.release().empty());
  EXPECT_EQ(ran,
            (std::vector<std::string>{"u0", "u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8", "u9"}));
  EXPECT_EQ(b.counters().discarded, 0u);
  EXPECT_EQ(b.counters().held_now, 0u);
}

TEST(Blocker, Spec8_1_QueueOneHoldsOneDiscardsEight) {
  Blocker b(100);
  const json msg = sleeper("queue_one");
  TenResult r = submit_ten(b, msg);
  EXPECT_EQ(r.passed, 1);
  EXPECT_EQ(r.held, 1);
  EXPECT_EQ(r.discarded, 8);
  EXPECT_EQ(held_uuids(b), (std::vector<std::string>{"u1"}));
  b.deactivated(identity_hash(msg));
  EXPECT_EQ(uuids(b.release()), (std::vector<std::string>{"u1"}));
}

TEST(Blocker, Spec8_1_DifferentArgsAreNotDuplicates) {
  Blocker b(100);
  json one = sleeper("discard");
  one["args"] = {1};
  json two = sleeper("discard");
  two["args"] = {2};
  QueuedTask a = make(one, "a"), c = make(two, "c");
  ASSERT_EQ(b.admit(a), Blocker::Decision::Pass);
  b.activated(a.identity);
  EXPECT_EQ(b.admit(c), Blocker::Decision::Pass);
  // Different kwargs too.
  json kw = sleeper("discard");
  kw["args"] = {1};
  kw["kwargs"] = {{"x", 1}};
  QueuedTask k = make(kw, "k");
  EXPECT_EQ(b.admit(k), Blocker::Decision::Pass);
}

TEST(Blocker, Spec8_1_MissingArgsDiffersFromEmptyArgs) {
  Blocker b(100);
  json bare = sleeper("discard");
  json empty_args = sleeper("discard");
  empty_args["args"] = json::array();
  QueuedTask x = make(bare, "x"), y = make(empty_args, "y");
  ASSERT_EQ(b.admit(x), Blocker::Decision::Pass);
  b.activated(x.identity);
  EXPECT_EQ(b.admit(y), Blocker::Decision::Pass);
}

TEST(Blocker, Spec8_1_UuidAndKeyOrderDoNotMatter) {
  Blocker b(100);
  auto a = make(json::parse(R"({"task": "t", "kwargs": {"a": 1, "b": 2}, "uuid": "1",
                                 "on_duplicate": "discard"})"),
                "1");
  auto c = make(json::parse(R"({"on_duplicate": "discard", "uuid": "2",
                                 "kwargs": {"b": 2, "a": 1}, "task": "t"})"),
                "2");
  ASSERT_EQ(b.admit(a), Blocker::Decision::Pass);
  b.activated(a.identity);
  EXPECT_EQ(b.admit(c), Blocker::Decision::Discard);
}

TEST(Blocker, Spec8_1_ParallelMessagesStillCountAsActive) {
  Blocker b(100);
  QueuedTask p = make(sleeper("parallel"), "p");
  ASSERT_EQ(b.admit(p), Blocker::Decision::Pass);
  b.activated(p.identity);
  QueuedTask s = make(sleeper("serial"), "s");
  EXPECT_EQ(b.admit(s), Blocker::Decision::Hold);
  // Parallel never blocks, even with a duplicate both active and held.
  QueuedTask p2 = make(sleeper("parallel"), "p2");
  EXPECT_EQ(b.admit(p2), Blocker::Decision::Pass);
  // Discard sees the held serial duplicate as well as the active parallel one.
  QueuedTask d = make(sleeper("discard"), "d");
  EXPECT_EQ(b.admit(d), Blocker::Decision::Discard);
  b.deactivated(p.identity);
  EXPECT_EQ(uuids(b.release()), (std::vector<std::string>{"s"}));
}

TEST(Blocker, Spec8_1_SerialDoesNotConsultHeldList) {
  // A serial duplicate arriving after the active one finished but before the release pass
  // passes: only the active set is checked for serial.
  Blocker b(100);
  const std::uint64_t id = identity_hash(sleeper("serial"));
  QueuedTask first = make(sleeper("serial"), "first");
  ASSERT_EQ(b.admit(first), Blocker::Decision::Pass);
  b.activated(id);
  QueuedTask second = make(sleeper("serial"), "second");
  ASSERT_EQ(b.admit(second), Blocker::Decision::Hold);
  b.deactivated(id);
  QueuedTask third = make(sleeper("serial"), "third");
  EXPECT_EQ(b.admit(third), Blocker::Decision::Pass);
  b.activated(id);
  EXPECT_TRUE(b.release().empty());
}

TEST(Blocker, Spec8_1_ReleasesOnePerIdentityPerPassInHeldOrder) {
  Blocker b(100);
  json ma = sleeper("serial"), mb = sleeper("serial");
  ma["args"] = {"a"};
  mb["args"] = {"b"};
  const std::uint64_t ia = identity_hash(ma), ib = identity_hash(mb);
  b.activated(ia);
  b.activated(ib);
  for (const char* u : {"a1", "b1", "a2", "b2"}) {
    QueuedTask t = make(u[0] == 'a' ? ma : mb, u);
    ASSERT_EQ(b.admit(t), Blocker::Decision::Hold);
  }
  b.deactivated(ib);
  b.deactivated(ia);
  EXPECT_EQ(uuids(b.release()), (std::vector<std::string>{"a1", "b1"}));
  // Not activated (e.g. the caller dropped them): nothing is active, so the next pass
  // releases the next duplicates.
  EXPECT_EQ(uuids(b.release()), (std::vector<std::string>{"a2", "b2"}));
  EXPECT_EQ(b.held_size(), 0u);
}

TEST(Blocker, Design8_FullHeldListDiscardsAndCounts) {
  Blocker b(2);
  const json msg = sleeper("serial");
  TenResult r = submit_ten(b, msg);
  EXPECT_EQ(r.passed, 1);
  EXPECT_EQ(r.held, 2);
  EXPECT_EQ(r.discarded, 7);
  EXPECT_EQ(b.counters().overflow, 7u);
  EXPECT_EQ(b.counters().discarded, 0u);  // overflow is not a §8.1 discard
  EXPECT_EQ(held_uuids(b), (std::vector<std::string>{"u1", "u2"}));
  // queue_one of another identity that would be held overflows too.
  json other = sleeper("queue_one");
  other["args"] = {1};
  b.activated(identity_hash(other));
  QueuedTask q = make(other, "q");
  EXPECT_EQ(b.admit(q), Blocker::Decision::Discard);
  EXPECT_EQ(b.counters().overflow, 8u);
  // Space freed by a release can be used again.
  b.deactivated(identity_hash(msg));
  ASSERT_EQ(b.release().size(), 1u);
  EXPECT_EQ(b.admit(q), Blocker::Decision::Hold);
  EXPECT_EQ(b.counters().held_now, 2u);

  Blocker none(0);
  none.activated(identity_hash(msg));
  QueuedTask s = make(msg, "s");
  EXPECT_EQ(none.admit(s), Blocker::Decision::Discard);
  EXPECT_EQ(none.counters().overflow, 1u);
}

TEST(Blocker, Spec4_4_CancelRemovesEveryMatch) {
  Blocker b(100);
  const json x = sleeper("serial");
  json y = sleeper("serial");
  y["args"] = {1};
  b.activated(identity_hash(x));
  b.activated(identity_hash(y));
  for (const char* u : {"x1", "y1", "x2", "x3", "y2"}) {
    QueuedTask t = make(u[0] == 'x' ? x : y, u);
    ASSERT_EQ(b.admit(t), Blocker::Decision::Hold);
  }
  const std::uint64_t ix = identity_hash(x);
  auto removed = b.remove_if([&](const QueuedTask& t) { return t.identity == ix; });
  EXPECT_EQ(uuids(removed), (std::vector<std::string>{"x1", "x2", "x3"}));
  EXPECT_EQ(held_uuids(b), (std::vector<std::string>{"y1", "y2"}));
  EXPECT_EQ(b.held_count(ix), 0u);
  EXPECT_EQ(b.counters().held_now, 2u);
  // Nothing of x is held any more: its release has nothing to do, and a queue_one duplicate
  // is held rather than discarded.
  b.deactivated(ix);
  EXPECT_TRUE(b.release().empty());
  b.activated(ix);
  json xq = x;
  xq["on_duplicate"] = "queue_one";
  QueuedTask q = make(xq, "xq");
  EXPECT_EQ(b.admit(q), Blocker::Decision::Hold);
  // Removing by uuid takes exactly that one.
  EXPECT_EQ(uuids(b.remove_if([](const QueuedTask& t) { return t.uuid() == "y2"; })),
            (std::vector<std::string>{"y2"}));
}

TEST(Blocker, Design8_ReleaseSkipsWhenNothingBecameInactive) {
  // 100k held tasks over 1000 identities, all still active: release() must not scan them.
  constexpr int kIdentities = 1000, kPerIdentity = 100;
  Blocker b(200000);
  std::vector<std::uint64_t> ids;
  for (int i = 0; i < kIdentities; ++i) {
    json msg = sleeper("serial");
    msg["args"] = {i};
    QueuedTask first = make(msg, "first");
    b.activated(first.identity);
    ids.push_back(first.identity);
    for (int j = 0; j < kPerIdentity; ++j) {
      QueuedTask t = make(msg, std::to_string(i) + "-" + std::to_string(j));
      ASSERT_EQ(b.admit(t), Blocker::Decision::Hold);
    }
  }
  ASSERT_EQ(b.held_size(), 100000u);
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(b.release().empty());
  EXPECT_EQ(b.release_scanned(), 0u);

  // A second active duplicate finishing leaves the identity active: still nothing to scan.
  b.activated(ids[7]);
  b.deactivated(ids[7]);
  EXPECT_TRUE(b.release().empty());
  EXPECT_EQ(b.release_scanned(), 0u);

  // One identity becoming inactive costs one scan and releases its oldest held task.
  b.deactivated(ids[500]);
  auto released = b.release();
  ASSERT_EQ(released.size(), 1u);
  EXPECT_EQ(released[0].uuid(), "500-0");
  EXPECT_EQ(b.release_scanned(), 1u);
  b.activated(ids[500]);
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(b.release().empty());
  EXPECT_EQ(b.release_scanned(), 1u);
}

}  // namespace
}  // namespace dispatcherd
