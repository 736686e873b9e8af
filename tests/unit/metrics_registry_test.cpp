#include "dispatcherd/metrics/metrics_registry.h"

#include <gtest/gtest.h>

#include <limits>
#include <string>

#include "dispatcherd/metrics/upstream_families.h"

namespace dispatcherd::metrics {
namespace {

TEST(Metrics, Spec10_UpstreamFamiliesRenderByteExact) {
  Registry reg;
  register_upstream_families(reg, {[] { return 9.0; }, [] { return 8.0; }, [] { return 2.0; }});
  // §10's example, byte for byte (prometheus-client 0.16).
  EXPECT_EQ(reg.render(),
            "# HELP dispatcher_messages_received_total Number of messages received by "
            "dispatchermain\n"
            "# TYPE dispatcher_messages_received_total counter\n"
            "dispatcher_messages_received_total 9.0\n"
            "# HELP dispatcher_control_messages_count_total Number of control messages "
            "received.\n"
            "# TYPE dispatcher_control_messages_count_total counter\n"
            "dispatcher_control_messages_count_total 8.0\n"
            "# HELP dispatcher_worker_count_total Number of workers running.\n"
            "# TYPE dispatcher_worker_count_total counter\n"
            "dispatcher_worker_count_total 2.0\n");
}

TEST(Metrics, Spec10_UpstreamFamiliesReadTheirSourcesAtEachRender) {
  Registry reg;
  double received = 0;
  register_upstream_families(reg,
                             {[&] { return received; }, [] { return 0.0; }, [] { return 0.0; }});
  received = 12;
  EXPECT_NE(reg.render().find("dispatcher_messages_received_total 12.0\n"), std::string::npos);
  received = 13;
  EXPECT_NE(reg.render().find("dispatcher_messages_received_total 13.0\n"), std::string::npos);
}

TEST(Metrics, Spec10_ValuesPrintLikePythonPrometheusClient) {
  // Python's repr, then floatToGoString's switch to exponents for 7+ integer digits.
  EXPECT_EQ(format_value(9), "9.0");
  EXPECT_EQ(format_value(0), "0.0");
  EXPECT_EQ(format_value(-0.0), "-0.0");
  EXPECT_EQ(format_value(0.5), "0.5");
  EXPECT_EQ(format_value(1.5), "1.5");
  EXPECT_EQ(format_value(100), "100.0");
  EXPECT_EQ(format_value(999999), "999999.0");
  EXPECT_EQ(format_value(1e-7), "1e-07");
  EXPECT_EQ(format_value(0.0001), "0.0001");
  EXPECT_EQ(format_value(0.00001), "1e-05");
  EXPECT_EQ(format_value(50e-6), "5e-05");
  EXPECT_EQ(format_value(0.1 + 0.2), "0.30000000000000004");
  EXPECT_EQ(format_value(1e6), "1e+06");
  EXPECT_EQ(format_value(1234567), "1.234567e+06");
  EXPECT_EQ(format_value(12345678.9), "1.23456789e+07");
  EXPECT_EQ(format_value(1e15), "1e+015");  // sic: floatToGoString's "e+0" prefix
  EXPECT_EQ(format_value(1e16), "1e+16");
  EXPECT_EQ(format_value(1.5e300), "1.5e+300");
  EXPECT_EQ(format_value(5e-324), "5e-324");
  EXPECT_EQ(format_value(-1234567), "-1234567.0");  // negatives keep Python's repr
  EXPECT_EQ(format_value(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(format_value(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(format_value(std::numeric_limits<double>::quiet_NaN()), "NaN");
}

TEST(Metrics, LabelValuesAndHelpAreEscaped) {
  Registry reg;
  auto& fam = reg.counter("dispatcherd_x_total", "line one\nback\\slash \"quoted\"", {"task"});
  fam.with({"a\\b\"c\nd"}).inc(2);
  EXPECT_EQ(reg.render(),
            "# HELP dispatcherd_x_total line one\\nback\\\\slash \"quoted\"\n"
            "# TYPE dispatcherd_x_total counter\n"
            "dispatcherd_x_total{task=\"a\\\\b\\\"c\\nd\"} 2.0\n");
}

TEST(Metrics, Design8_LabelSetsAreBoundedAndRefusalsCounted) {
  Registry reg;
  auto& fam = reg.counter("dispatcherd_tasks_total", "Tasks.", {"task"}, 3);
  Counter& first = fam.with({"t0"});
  for (int i = 0; i < 5; ++i) fam.with({"t" + std::to_string(i)}).inc();
  EXPECT_EQ(fam.size(), 3u);
  EXPECT_EQ(fam.refused(), 2u);
  EXPECT_EQ(reg.refused_total(), 2u);
  // Known label sets keep working when the family is full; the reference never moved.
  fam.with({"t0"}).inc();
  EXPECT_EQ(&fam.with({"t0"}), &first);
  EXPECT_EQ(first.value(), 2.0);
  std::string text = reg.render();
  EXPECT_NE(text.find("dispatcherd_tasks_total{task=\"t2\"} 1.0\n"), std::string::npos);
  EXPECT_EQ(text.find("t3"), std::string::npos);
  EXPECT_EQ(text.find("t4"), std::string::npos);
}

TEST(Metrics, ChildReferencesSurviveGrowth) {
  Registry reg;
  auto& fam = reg.gauge("dispatcherd_g", "G.", {"k"});
  Gauge& g = fam.with({"first"});
  for (int i = 0; i < 150; ++i) fam.with({std::to_string(i)});
  g.set(7);
  g.dec(2);
  EXPECT_EQ(fam.with({"first"}).value(), 5.0);
}

TEST(Metrics, FamiliesRenderInRegistrationOrderAndUnlabelledShowZero) {
  Registry reg;
  reg.gauge("dispatcherd_b", "B.");
  reg.counter("dispatcherd_a_total", "A.", {"task"});  // labelled, no child yet
  reg.counter("dispatcherd_c_total", "C.").get().inc(3);
  EXPECT_EQ(reg.render(),
            "# HELP dispatcherd_b B.\n# TYPE dispatcherd_b gauge\ndispatcherd_b 0.0\n"
            "# HELP dispatcherd_a_total A.\n# TYPE dispatcherd_a_total counter\n"
            "# HELP dispatcherd_c_total C.\n# TYPE dispatcherd_c_total counter\n"
            "dispatcherd_c_total 3.0\n");
}

TEST(Metrics, HistogramRendersCumulativeBucketsInfCountAndSum) {
  Registry reg;
  const double bounds[] = {0.001, 0.5, 1, 600};
  auto& fam = reg.histogram("dispatcherd_run_seconds", "Run time.", bounds, {"task"});
  Histogram& h = fam.with({"noop"});
  h.observe(0.001);  // an upper bound is inclusive
  h.observe(0.25);
  h.observe(0.75);
  h.observe(1000);
  h.observe(std::numeric_limits<double>::quiet_NaN());  // ignored
  EXPECT_EQ(h.count(), 4u);
  EXPECT_EQ(reg.render(),
            "# HELP dispatcherd_run_seconds Run time.\n"
            "# TYPE dispatcherd_run_seconds histogram\n"
            "dispatcherd_run_seconds_bucket{task=\"noop\",le=\"0.001\"} 1.0\n"
            "dispatcherd_run_seconds_bucket{task=\"noop\",le=\"0.5\"} 2.0\n"
            "dispatcherd_run_seconds_bucket{task=\"noop\",le=\"1.0\"} 3.0\n"
            "dispatcherd_run_seconds_bucket{task=\"noop\",le=\"600.0\"} 3.0\n"
            "dispatcherd_run_seconds_bucket{task=\"noop\",le=\"+Inf\"} 4.0\n"
            "dispatcherd_run_seconds_count{task=\"noop\"} 4.0\n"
            "dispatcherd_run_seconds_sum{task=\"noop\"} 1001.001\n");
}

TEST(Metrics, UnlabelledHistogramAndStockBucketsRender) {
  Registry reg;
  auto& h = reg.histogram("dispatcherd_latency_seconds", "Latency.", kLatencyBuckets).get();
  h.observe(60e-6);
  std::string text = reg.render();
  EXPECT_NE(text.find("dispatcherd_latency_seconds_bucket{le=\"5e-05\"} 0.0\n"), std::string::npos);
  EXPECT_NE(text.find("dispatcherd_latency_seconds_bucket{le=\"0.0001\"} 1.0\n"),
            std::string::npos);
  EXPECT_NE(text.find("dispatcherd_latency_seconds_count 1.0\n"), std::string::npos);
  EXPECT_NE(text.find("dispatcherd_latency_seconds_sum 6e-05\n"), std::string::npos);
  Registry reg2;
  reg2.histogram("dispatcherd_run_seconds", "Run.", kRunTimeBuckets).get().observe(700);
  EXPECT_NE(
      reg2.render().find("le=\"600.0\"} 0.0\ndispatcherd_run_seconds_bucket{le=\"+Inf\"} 1.0"),
      std::string::npos);
}

TEST(Metrics, CollectTimeFamilyIsFilledAtRender) {
  Registry reg;
  int depth = 3;
  reg.collect("dispatcherd_workers", "Workers by status.", MetricType::Gauge, {"status"},
              [&](SampleSink& s) {
                s.add({"ready"}, 2);
                s.add({"starting"}, depth);
              });
  depth = 4;
  EXPECT_EQ(reg.render(),
            "# HELP dispatcherd_workers Workers by status.\n"
            "# TYPE dispatcherd_workers gauge\n"
            "dispatcherd_workers{status=\"ready\"} 2.0\n"
            "dispatcherd_workers{status=\"starting\"} 4.0\n");
}

TEST(Metrics, Design8_CollectTimeFamilyIsBounded) {
  Registry reg;
  reg.collect(
      "dispatcherd_q", "Q.", MetricType::Gauge, {"queue"},
      [](SampleSink& s) {
        for (int i = 0; i < 5; ++i) s.add({std::to_string(i)}, i);
      },
      2);
  std::string text = reg.render();
  EXPECT_NE(text.find("dispatcherd_q{queue=\"1\"} 1.0\n"), std::string::npos);
  EXPECT_EQ(text.find("queue=\"2\""), std::string::npos);
  EXPECT_EQ(reg.refused_total(), 3u);
}

TEST(Metrics, CollectFailureMakesTryRenderFail) {
  Registry reg;
  reg.counter("dispatcherd_ok_total", "Ok.");
  bool broken = false;
  reg.collect("dispatcherd_pg_queue_usage", "Usage.", MetricType::Gauge, {}, [&](SampleSink& s) {
    if (broken) {
      s.fail("no connection");
    } else {
      s.add({}, 0.25);
    }
  });
  auto good = reg.try_render();
  ASSERT_TRUE(good.has_value());
  EXPECT_NE(good->find("dispatcherd_pg_queue_usage 0.25\n"), std::string::npos);
  broken = true;
  EXPECT_FALSE(reg.try_render().has_value());
}

TEST(Metrics, HotPathIncrementIsAPlainAdd) {
  Registry reg;
  Counter& c = reg.counter("dispatcherd_tasks_total", "T.", {"task"}).with({"noop"});
  for (int i = 0; i < 1000000; ++i) c.inc();
  EXPECT_EQ(c.value(), 1e6);
  EXPECT_NE(reg.render().find("{task=\"noop\"} 1e+06\n"), std::string::npos);
}

}  // namespace
}  // namespace dispatcherd::metrics
