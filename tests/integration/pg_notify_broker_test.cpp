// PgNotifyBroker against a real Postgres (the CTest `postgres` fixture): LISTEN on quoted
// channels, chunked and repeated publishes, reconnect after the backend dies, retrying an
// unreachable server without blocking, the self-check round trip, and draining a 100k burst
// with a per-turn budget while timers keep running.

#include "dispatcherd/brokers/pg_notify_broker.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "dispatcherd/chunking.h"
#include "dispatcherd/loop/event_loop.h"
#include "pg_test_env.h"

namespace dispatcherd {
namespace {

using testing::pg_dsn;
using testing::pg_exec;
using testing::unique_channel;

struct Received {
  std::string channel;
  std::string payload;
};

std::string sql_literal(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    out += c;
    if (c == '\'') out += '\'';
  }
  return out + "'";
}

PgNotifyConfig config_for(std::vector<std::string> channels, bool self_check = false) {
  PgNotifyConfig c;
  c.enabled = true;
  c.conninfo = pg_dsn();
  c.channels = std::move(channels);
  if (self_check) {
    c.max_connection_idle_seconds = 0.3;
    c.max_self_check_message_age_seconds = 0.25;
  } else {
    c.max_connection_idle_seconds.reset();
    c.max_self_check_message_age_seconds.reset();
  }
  return c;
}

// Turns the loop until `pred` holds or `timeout` seconds pass; returns pred().
bool run_until(EventLoop& loop, const std::function<bool()>& pred, double timeout = 20.0) {
  MonoTime deadline = mono_now() + timeout;
  while (!pred() && mono_now() < deadline) loop.run_once(0.05);
  return pred();
}

// A broker on `channels` whose sink records every notification.
struct Fixture {
  EventLoop loop;
  std::vector<Received> got;
  std::unique_ptr<PgNotifyBroker> broker;
  double sink_cost_seconds = 0;  ///< busy time per message, to make a drain slow

  explicit Fixture(PgNotifyConfig cfg, PgNotifyBrokerOptions opts = {}) {
    broker = std::make_unique<PgNotifyBroker>(
        loop, cfg,
        [this](std::string_view ch, std::string_view payload) {
          got.push_back({std::string(ch), std::string(payload)});
          if (sink_cost_seconds > 0) {
            MonoTime until = mono_now() + sink_cost_seconds;
            while (mono_now() < until) {
            }
          }
        },
        std::move(opts));
  }
  bool start_and_wait() {
    broker->start();
    return run_until(loop, [&] { return broker->ready(); });
  }
  std::size_t count_on(const std::string& ch) const {
    std::size_t n = 0;
    for (const auto& r : got) n += r.channel == ch;
    return n;
  }
};

TEST(PgNotifyBroker, Spec3_1_4_ReceivesNotificationsInOrder) {
  REQUIRE_PG();
  std::string ch = unique_channel("recv");
  Fixture f(config_for({ch}));
  ASSERT_TRUE(f.start_and_wait());
  for (int i = 0; i < 3; ++i)
    pg_exec("SELECT pg_notify(" + sql_literal(ch) + ", 'msg " + std::to_string(i) + "')");
  ASSERT_TRUE(run_until(f.loop, [&] { return f.got.size() == 3; }));
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(f.got[i].channel, ch);
    EXPECT_EQ(f.got[i].payload, "msg " + std::to_string(i));
  }
  auto st = f.broker->status();
  EXPECT_EQ(st["produced_count"], 3);
  EXPECT_EQ(st["recycle_count"], 0);
  EXPECT_EQ(st["connection"]["connected"], true);
  EXPECT_TRUE(st["connection"]["backend_pid"].is_number_integer());
  EXPECT_EQ(st["broker_self_check"]["enabled"], false);
  EXPECT_TRUE(st["broker_self_check"]["average_time_seconds"].is_null());
}

TEST(PgNotifyBroker, Spec3_1_2_ListensOnQuotedCaseSensitiveChannel) {
  REQUIRE_PG();
  std::string ch = unique_channel("Tasks.Mixed-Case");
  std::string lower;
  for (char c : ch) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  Fixture f(config_for({ch}));
  ASSERT_TRUE(f.start_and_wait());
  // The lower-cased name is another channel: an unquoted LISTEN would have listened there.
  pg_exec("SELECT pg_notify(" + sql_literal(lower) + ", 'wrong')");
  pg_exec("SELECT pg_notify(" + sql_literal(ch) + ", 'right')");
  ASSERT_TRUE(run_until(f.loop, [&] { return !f.got.empty(); }));
  ASSERT_EQ(f.got.size(), 1u);
  EXPECT_EQ(f.got[0].channel, ch);
  EXPECT_EQ(f.got[0].payload, "right");
}

TEST(PgNotifyBroker, Spec2_4_LargePublishArrivesAsV1ChunksThatReassemble) {
  REQUIRE_PG();
  std::string ch = unique_channel("chunks");
  Fixture f(config_for({ch}));
  ASSERT_TRUE(f.start_and_wait());
  nlohmann::json msg = {{"task", "demo.echo"}, {"uuid", "big-1"}};
  std::string text;
  for (int i = 0; i < 3000; ++i) text += "é\"x" + std::to_string(i);  // escapes and multibyte
  msg["kwargs"] = {{"text", text}};
  std::string original = msg.dump();
  ASSERT_GT(original.size(), 2 * kPgNotifyMaxBytes);
  f.broker->publish(ch, original);
  ChunkAccumulator acc;
  nlohmann::json assembled;
  std::size_t pieces = 0;
  ASSERT_TRUE(run_until(f.loop, [&] {
    for (; pieces < f.got.size(); ++pieces) {
      const std::string& p = f.got[pieces].payload;
      EXPECT_LE(p.size(), kPgNotifyMaxBytes);
      auto in = acc.ingest(nlohmann::json::parse(p), mono_now());
      EXPECT_NE(in.outcome, ChunkAccumulator::Outcome::NotChunk);
      EXPECT_NE(in.outcome, ChunkAccumulator::Outcome::Error) << in.error;
      if (in.outcome == ChunkAccumulator::Outcome::Complete) assembled = in.message;
    }
    return !assembled.is_null();
  }));
  EXPECT_GE(pieces, 3u);
  EXPECT_EQ(assembled, msg);
  EXPECT_EQ(f.broker->status()["connection"]["published_pieces"], pieces);
}

TEST(PgNotifyBroker, Spec3_1_2_IdenticalPayloadsPublishedTwiceBothArrive) {
  REQUIRE_PG();
  std::string ch = unique_channel("dup");
  Fixture f(config_for({ch}));
  ASSERT_TRUE(f.start_and_wait());
  // Sent back to back in one pipeline: only a Sync per statement keeps them from collapsing.
  f.broker->publish(ch, R"({"task": "same"})");
  f.broker->publish(ch, R"({"task": "same"})");
  ASSERT_TRUE(run_until(f.loop, [&] { return f.got.size() >= 2; }));
  EXPECT_EQ(f.got[0].payload, R"({"task": "same"})");
  EXPECT_EQ(f.got[1].payload, R"({"task": "same"})");
}

TEST(PgNotifyBroker, Spec3_1_3_PublishChannelFallbacks) {
  REQUIRE_PG();
  EventLoop loop;
  auto one = config_for({"only_one"});
  PgNotifyBroker b1(loop, one, nullptr);
  EXPECT_EQ(*b1.resolve_publish_channel(""), "only_one");
  EXPECT_EQ(*b1.resolve_publish_channel("explicit"), "explicit");
  EXPECT_FALSE(b1.resolve_publish_channel(std::string(64, 'a')).ok());
  auto two = config_for({"a", "b"});
  PgNotifyBroker b2(loop, two, nullptr);
  auto r = b2.resolve_publish_channel("");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message,
            "Could not determine a channel to use publish to from settings or PGNotify config");
  two.default_publish_channel = "dflt";
  PgNotifyBroker b3(loop, two, nullptr);
  EXPECT_EQ(*b3.resolve_publish_channel(""), "dflt");
}

TEST(PgNotifyBroker, Spec3_1_5_ReconnectsAfterBackendTerminated) {
  REQUIRE_PG();
  std::string ch = unique_channel("reconnect");
  PgNotifyBrokerOptions opts;
  opts.reconnect_initial_seconds = 0.05;
  Fixture f(config_for({ch}), opts);
  ASSERT_TRUE(f.start_and_wait());
  auto pid = f.broker->backend_pid();
  ASSERT_TRUE(pid.has_value());
  EXPECT_EQ(pg_exec("SELECT pg_terminate_backend(" + std::to_string(*pid) + ")"), "t");
  ASSERT_TRUE(run_until(
      f.loop, [&] { return f.broker->status()["recycle_count"] == 1 && f.broker->ready(); }));
  EXPECT_NE(f.broker->backend_pid(), pid);
  pg_exec("SELECT pg_notify(" + sql_literal(ch) + ", 'after')");
  ASSERT_TRUE(run_until(f.loop, [&] { return !f.got.empty(); }));
  EXPECT_EQ(f.got.back().payload, "after");
  auto conn = f.broker->status()["connection"];
  EXPECT_EQ(conn["reconnects"], 1);
  EXPECT_FALSE(conn["last_error"].is_null());
  EXPECT_TRUE(conn["current_outage_seconds"].is_null());
  EXPECT_GT(conn["outage_seconds_total"].get<double>(), 0.0);
}

// Connect attempts to nowhere fail fast, are retried with backoff, and never stall the loop.
void expect_retries_without_blocking(const std::string& conninfo) {
  auto cfg = config_for({"nowhere"});
  cfg.conninfo = conninfo;
  PgNotifyBrokerOptions opts;
  opts.reconnect_initial_seconds = 0.02;
  opts.reconnect_max_seconds = 0.08;
  Fixture f(cfg, opts);
  int ticks = 0;
  std::function<void()> tick = [&] {
    ++ticks;
    f.loop.after(0.01, tick);
  };
  f.loop.after(0.01, tick);
  MonoTime t0 = mono_now();
  f.broker->start();
  EXPECT_LT(mono_now() - t0, 0.1);
  double longest_turn = 0;
  MonoTime end = mono_now() + 1.0;
  while (mono_now() < end) {
    MonoTime before = mono_now();
    f.loop.run_once(0.05);
    longest_turn = std::max(longest_turn, mono_now() - before);
  }
  EXPECT_LT(longest_turn, 0.15);
  EXPECT_GT(ticks, 40);
  EXPECT_FALSE(f.broker->ready());
  auto st = f.broker->status();
  EXPECT_GE(st["connection"]["connect_attempts"].get<int>(), 5);
  EXPECT_GE(st["recycle_count"].get<int>(), 4);
  EXPECT_FALSE(st["connection"]["last_error"].is_null());
  EXPECT_EQ(st["connection"]["connected"], false);
  // A reply published during the outage is dropped at the next failed attempt, not kept.
  f.broker->publish("nowhere", "x");
  ASSERT_TRUE(run_until(
      f.loop, [&] { return f.broker->status()["connection"]["publish_dropped_lost"] == 1; }, 5.0));
  EXPECT_EQ(f.broker->status()["connection"]["publish_queue_pieces"], 0);
}

TEST(PgNotifyBroker, Spec3_1_5_UnreachableSocketDirRetriesWithoutBlocking) {
  REQUIRE_PG();
  expect_retries_without_blocking("host=/nonexistent/dispatcherd-test port=5999 dbname=x");
}

TEST(PgNotifyBroker, Spec3_1_5_RefusedTcpPortRetriesWithoutBlocking) {
  REQUIRE_PG();
  expect_retries_without_blocking("hostaddr=127.0.0.1 port=1 dbname=x");
}

TEST(PgNotifyBroker, Spec3_1_6_SelfCheckRoundTripSucceeds) {
  REQUIRE_PG();
  std::string ch = unique_channel("selfcheck");
  Fixture f(config_for({ch}, /*self_check=*/true));
  ASSERT_TRUE(f.start_and_wait());
  ASSERT_EQ(f.broker->listen_channels().back(), f.broker->self_check_channel());
  EXPECT_EQ(f.broker->self_check_channel().size(), 47u);
  ASSERT_TRUE(run_until(f.loop, [&] {
    return f.broker->status()["broker_self_check"]["success_count"].get<int>() >= 2;
  }));
  auto st = f.broker->status();
  EXPECT_EQ(st["recycle_count"], 0);
  EXPECT_EQ(st["broker_self_check"]["enabled"], true);
  EXPECT_LT(st["broker_self_check"]["max_time_seconds"].get<double>(), 0.25);
  EXPECT_GT(st["broker_self_check"]["average_time_seconds"].get<double>(), 0.0);
  // The check message also reached the sink, in upstream's exact text.
  ASSERT_GE(f.count_on(f.broker->self_check_channel()), 2u);
  EXPECT_EQ(f.got[0].payload,
            R"({"self_check": true, "task": "lambda: \")" + f.broker->broker_id() + R"(\""})");
}

TEST(PgNotifyBroker, Spec3_1_6_LateSelfCheckRecyclesTheConnection) {
  REQUIRE_PG();
  std::string ch = unique_channel("latecheck");
  auto cfg = config_for({ch}, /*self_check=*/true);
  cfg.max_self_check_message_age_seconds = 1e-9;  // no round trip is that fast
  PgNotifyBrokerOptions opts;
  opts.reconnect_initial_seconds = 0.05;
  Fixture f(cfg, opts);
  ASSERT_TRUE(f.start_and_wait());
  auto first_pid = f.broker->backend_pid();
  ASSERT_TRUE(run_until(f.loop, [&] {
    return f.broker->status()["recycle_count"].get<int>() >= 1 && f.broker->ready();
  }));
  EXPECT_NE(f.broker->backend_pid(), first_pid);
  auto st = f.broker->status();
  EXPECT_EQ(st["broker_self_check"]["success_count"], 0);
  EXPECT_GE(st["broker_self_check"]["failure_count"].get<int>(), 1);
  EXPECT_NE(st["connection"]["last_error"].get<std::string>().find(
                "self check failed, message received after"),
            std::string::npos);
  // A failed check is not handed on like a good one (upstream raises before the pipeline).
  EXPECT_EQ(f.count_on(f.broker->self_check_channel()), 0u);
}

TEST(PgNotifyBroker, Spec3_1_4_BurstDrainedWithBudgetWhileTimersFireAndSelfCheckHolds) {
  REQUIRE_PG();
  std::string ch = unique_channel("burst");
  Fixture f(config_for({ch}, /*self_check=*/true));
  ASSERT_TRUE(f.start_and_wait());
  // ~1 s of work for the whole burst: longer than several self-check periods (0.3 s) and
  // than the allowed round trip (0.25 s), so a check sent meanwhile waits behind the backlog.
  f.sink_cost_seconds = 10e-6;
  std::vector<MonoTime> ticks;
  std::function<void()> tick = [&] {
    ticks.push_back(mono_now());
    f.loop.after(0.01, tick);
  };
  f.loop.after(0.01, tick);
  constexpr std::size_t kBurst = 100000;
  // Distinct payloads: identical ones in one transaction would be collapsed by Postgres.
  pg_exec("SELECT count(pg_notify(" + sql_literal(ch) + ", 'm' || i)) FROM generate_series(1, " +
          std::to_string(kBurst) + ") i");
  MonoTime first = 0;
  ASSERT_TRUE(run_until(
      f.loop,
      [&] {
        if (first == 0 && !f.got.empty()) first = mono_now();
        return f.count_on(ch) == kBurst;
      },
      90.0))
      << "received " << f.count_on(ch);
  MonoTime last = mono_now();
  std::size_t n = 0;
  for (const auto& r : f.got) {
    if (r.channel != ch) continue;
    if (r.payload != "m" + std::to_string(++n)) {
      ADD_FAILURE() << "out of order at " << n << ": " << r.payload;
      break;
    }
  }
  // Timers kept firing while the backlog drained: a 10 ms timer ticked on average at least
  // every 50 ms, and no single turn held the loop for long. (Without the budget one turn can
  // still end when libpq's buffer is empty; the bounds leave room for slow, loaded CI hosts
  // and sanitizer builds.)
  double worst_gap = 0;
  std::size_t during = 0;
  for (std::size_t i = 1; i < ticks.size(); ++i) {
    if (ticks[i] < first || ticks[i - 1] > last) continue;
    ++during;
    worst_gap = std::max(worst_gap, ticks[i] - ticks[i - 1]);
  }
  EXPECT_LT(worst_gap, 0.25) << "drain took " << (last - first) << " s";
  EXPECT_GE(static_cast<double>(during), (last - first) / 0.05)
      << "drain took " << (last - first) << " s";
  // Keep running past a few self-check periods: the check must not have failed.
  run_until(
      f.loop, [] { return false; }, 1.0);
  auto st = f.broker->status();
  EXPECT_EQ(st["recycle_count"], 0) << st.dump();
  EXPECT_GT(last - first, 0.5) << "the drain was too fast to overlap a self-check period";
  EXPECT_GE(st["broker_self_check"]["success_count"].get<int>(), 1);
  EXPECT_EQ(st["broker_self_check"]["failure_count"], 0);
  EXPECT_EQ(st["produced_count"].get<std::size_t>(), f.got.size());
  // The budget really was hit: the drain stopped and resumed on later turns.
  EXPECT_GT(st["connection"]["notify_drain_deferrals"].get<int>(), 0);
}

TEST(PgNotifyBroker, QueueUsageAndStopAreClean) {
  REQUIRE_PG();
  std::string ch = unique_channel("usage");
  Fixture f(config_for({ch}));
  ASSERT_TRUE(f.start_and_wait());
  f.broker->request_queue_usage();
  ASSERT_TRUE(run_until(f.loop, [&] {
    return !f.broker->status()["connection"]["notification_queue_usage"].is_null();
  }));
  EXPECT_GE(f.broker->status()["connection"]["notification_queue_usage"].get<double>(), 0.0);
  std::size_t timers = f.loop.timer_count();
  f.broker->stop();
  EXPECT_FALSE(f.broker->ready());
  EXPECT_EQ(f.broker->status()["connection"]["connected"], false);
  EXPECT_LE(f.loop.timer_count(), timers);
  f.loop.run_once(0);  // nothing left to call back into
}

}  // namespace
}  // namespace dispatcherd
