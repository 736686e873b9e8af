#pragma once
// A small metrics registry that renders the Prometheus text format 0.0.4 by hand.
//
// Why not prometheus-cpp: its values are atomics behind mutexes (we have one thread), its
// serializer prints `3` where upstream's Python client prints `3.0`, and its Exposer starts
// threads. Rendering ourselves keeps upstream's three families byte-identical (spec §10).
//
// Hot path: look a child up once (`Counter& c = family.with({"task.name"})`) and keep the
// reference; `c.inc()` is then a plain add. References stay valid for the registry's life.
//
// Bounds (DESIGN §8): a labelled family holds at most `max_label_sets` children. Past that,
// with() hands out a shared sink that is never rendered and counts the refusal, so a caller
// never has to branch and a flood of distinct label values cannot grow memory.
//
// Collect-time families take their samples from a callback at render time (queue depth,
// workers by status), so the service does not have to update them on every change.

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace dispatcherd::metrics {

/// Formats a sample value exactly as Python's prometheus_client does (floatToGoString):
/// Python's float repr (`9.0`, `0.5`, `1e-07`), except that positive values with 7 to 16
/// integer digits switch to Go-style exponents (`1234567.0` → `1.234567e+06`), and
/// `+Inf`, `-Inf`, `NaN`.
std::string format_value(double v);
/// Appends format_value(v) to `out` without a temporary string.
void append_value(std::string& out, double v);
/// Appends `v` escaped for a label value: backslash, double quote and newline.
void append_escaped_label_value(std::string& out, std::string_view v);

/// Kind of a family, as printed on its `# TYPE` line.
enum class MetricType { Counter, Gauge, Histogram };
/// "counter", "gauge" or "histogram".
const char* metric_type_name(MetricType t);

/// Default bound on the children of one labelled family.
inline constexpr std::size_t kDefaultMaxLabelSets = 200;

/// Bucket bounds for task run times in seconds (1 ms .. 10 min).
inline constexpr double kRunTimeBuckets[] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600};
/// Bucket bounds for latencies the service adds, in seconds (50 µs .. 1 s).
inline constexpr double kLatencyBuckets[] = {50e-6, 100e-6, 250e-6, 500e-6, 0.001, 0.0025, 0.005,
                                             0.01,  0.025,  0.05,   0.1,    0.25,  0.5,    1};

/// A monotonically increasing value. Single-threaded: a plain double.
class Counter {
 public:
  /// Adds `v` (callers pass v >= 0; a counter never goes down).
  void inc(double v = 1.0) { value_ += v; }
  /// The current value.
  double value() const { return value_; }

 private:
  double value_ = 0;
};

/// A value that can go up and down.
class Gauge {
 public:
  /// Replaces the value.
  void set(double v) { value_ = v; }
  /// Adds `v`.
  void inc(double v = 1.0) { value_ += v; }
  /// Subtracts `v`.
  void dec(double v = 1.0) { value_ -= v; }
  /// The current value.
  double value() const { return value_; }

 private:
  double value_ = 0;
};

/// Observations sorted into fixed buckets (upper bounds inclusive, like Prometheus `le`).
class Histogram {
 public:
  /// `bounds` are strictly increasing finite upper bounds; +Inf is implicit. They must
  /// outlive the histogram (the family owns them).
  explicit Histogram(std::span<const double> bounds);
  /// Records one observation; NaN is ignored (it would poison _sum and fits no bucket).
  void observe(double v);
  /// The bucket bounds, without +Inf.
  std::span<const double> bounds() const { return bounds_; }
  /// Non-cumulative count per bucket; the last entry is the +Inf bucket.
  const std::vector<std::uint64_t>& bucket_counts() const { return counts_; }
  /// Sum of all observations.
  double sum() const { return sum_; }
  /// Number of observations.
  std::uint64_t count() const { return count_; }

 private:
  std::span<const double> bounds_;
  std::vector<std::uint64_t> counts_;
  double sum_ = 0;
  std::uint64_t count_ = 0;
};

/// What every family has in common: identity, help text and the label-set bound.
class FamilyBase {
 public:
  /// Checks the names (invalid or duplicate label names are programming errors: abort).
  FamilyBase(std::string name, std::string help, MetricType type,
             std::vector<std::string> label_names, std::size_t max_label_sets);
  virtual ~FamilyBase() = default;
  FamilyBase(const FamilyBase&) = delete;
  FamilyBase& operator=(const FamilyBase&) = delete;

  /// The metric name as exposed (counters keep the `_total` they were given).
  const std::string& name() const { return name_; }
  /// The help text (escaped when rendered).
  const std::string& help() const { return help_; }
  /// The `# TYPE` of the family.
  MetricType type() const { return type_; }
  /// Label names, in the order values are given and printed.
  const std::vector<std::string>& label_names() const { return label_names_; }
  /// Most children (label sets) the family accepts.
  std::size_t max_label_sets() const { return max_label_sets_; }
  /// Label sets refused because the family was full (cumulative).
  std::uint64_t refused() const { return refused_; }

  /// Appends `# HELP`, `# TYPE` and the samples. Returns false when a collect callback
  /// reported a failure (the output is then incomplete and must not be served).
  virtual bool render(std::string& out) const = 0;

 protected:
  /// Appends the `# HELP` and `# TYPE` lines.
  void render_header(std::string& out) const;
  /// Appends `name{a="x",b="y"}` (or just `name`), with `extra_label` (e.g. `le`) last.
  void append_series(std::string& out, std::string_view suffix,
                     const std::vector<std::string>& values, std::string_view extra_name = {},
                     std::string_view extra_value = {}) const;
  /// Counts one refused label set (mutable: collect-time families refuse while rendering).
  void note_refused() const { ++refused_; }

 private:
  std::string name_;
  std::string help_;
  MetricType type_;
  std::vector<std::string> label_names_;
  std::size_t max_label_sets_;
  mutable std::uint64_t refused_ = 0;
};

/// A family of stored metrics (Counter, Gauge or Histogram), one child per label set.
template <typename T>
class Family : public FamilyBase {
 public:
  /// Use Registry::counter/gauge/histogram instead. `bounds` matters for histograms only.
  Family(std::string name, std::string help, MetricType type, std::vector<std::string> label_names,
         std::size_t max_label_sets, std::vector<double> bounds = {});

  /// The child for `label_values` (one per label name, in order), created on first use.
  /// When the family is full a new label set is refused (counted) and a shared, unrendered
  /// sink is returned, so updates to it are harmless. The reference stays valid.
  T& with(std::initializer_list<std::string_view> label_values);
  /// Same as with() for values held in a container.
  T& with_values(std::span<const std::string> label_values);
  /// The single child of a family without labels.
  T& get() { return with({}); }
  /// Number of children (label sets) created.
  std::size_t size() const { return children_.size(); }

  /// Appends the family's text; children in creation order. Always succeeds.
  bool render(std::string& out) const override;

 private:
  struct Child {
    std::vector<std::string> values;
    T metric;
  };
  T& find_or_add(std::vector<std::string> values);
  T make_metric() const;

  std::vector<double> bounds_;  // histograms only; children point into it
  std::deque<Child> children_;  // deque: references survive growth
  std::unordered_map<std::string, std::size_t> index_;
  std::unique_ptr<T> overflow_;  // where refused label sets go
};

using CounterFamily = Family<Counter>;
using GaugeFamily = Family<Gauge>;
using HistogramFamily = Family<Histogram>;

/// Receives the samples of a collect-time family during render().
class SampleSink {
 public:
  /// Adds one sample; `label_values` has one entry per label name. Past the family's
  /// max_label_sets the sample is dropped and counted as refused.
  virtual void add(std::initializer_list<std::string_view> label_values, double value) = 0;
  /// Same as add() for values held in a container.
  virtual void add_values(std::span<const std::string> label_values, double value) = 0;
  /// Marks this render as failed (the HTTP answer becomes 500 `Error generating metrics`).
  virtual void fail(std::string_view reason) = 0;

 protected:
  ~SampleSink() = default;
};

/// Fills a collect-time family at render time.
using CollectFn = std::function<void(SampleSink&)>;

/// The families of one process, rendered in registration order.
class Registry {
 public:
  /// `default_max_label_sets` applies to families registered without their own bound.
  explicit Registry(std::size_t default_max_label_sets = kDefaultMaxLabelSets);
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  /// Registers a counter family. Names must be valid Prometheus names and unique
  /// (a duplicate or invalid name is a programming error: assert and abort).
  CounterFamily& counter(std::string name, std::string help,
                         std::vector<std::string> label_names = {}, std::size_t max_label_sets = 0);
  /// Registers a gauge family (max_label_sets 0 = the registry default).
  GaugeFamily& gauge(std::string name, std::string help, std::vector<std::string> label_names = {},
                     std::size_t max_label_sets = 0);
  /// Registers a histogram family with strictly increasing finite `bounds` (+Inf implicit).
  HistogramFamily& histogram(std::string name, std::string help, std::span<const double> bounds,
                             std::vector<std::string> label_names = {},
                             std::size_t max_label_sets = 0);
  /// Registers a counter or gauge family whose samples `fn` emits at each render.
  void collect(std::string name, std::string help, MetricType type,
               std::vector<std::string> label_names, CollectFn fn, std::size_t max_label_sets = 0);
  /// Shorthand for an unlabelled collect-time family with one value.
  void collect_value(std::string name, std::string help, MetricType type,
                     std::function<double()> fn);

  /// Appends the whole exposition to `out`. Returns false when a collect callback failed
  /// (the text is then incomplete and must not be served).
  bool render_to(std::string& out) const;
  /// The whole exposition; on a collect failure the text is incomplete (see try_render()).
  std::string render() const;
  /// The whole exposition, or nullopt when a collect callback failed (what the HTTP
  /// server's render function wants).
  std::optional<std::string> try_render() const;

  /// Label sets refused across all families (export it so a full bound is visible).
  std::uint64_t refused_total() const;
  /// Number of registered families.
  std::size_t family_count() const { return families_.size(); }

 private:
  void add(std::unique_ptr<FamilyBase> family);
  std::size_t bound(std::size_t requested) const;

  std::size_t default_max_label_sets_;
  std::vector<std::unique_ptr<FamilyBase>> families_;
};

}  // namespace dispatcherd::metrics
