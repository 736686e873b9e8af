#include "dispatcherd/metrics/metrics_registry.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <unordered_set>

#include "dispatcherd/log.h"

namespace dispatcherd::metrics {

namespace {

/// Python's repr() of a finite double: the shortest round-trip digits (what to_chars gives
/// too), positional when the decimal exponent is in [-4, 16), else `d.ddde±XX`.
std::string python_repr(double v) {
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  std::string_view s(buf, static_cast<std::size_t>(res.ptr - buf));
  std::string out;
  if (s.front() == '-') {
    out += '-';
    s.remove_prefix(1);
  }
  std::size_t epos = s.find('e');
  std::string digits(1, s[0]);
  if (epos > 1) digits.append(s.substr(2, epos - 2));
  int exp = 0;
  bool exp_neg = s[epos + 1] == '-';
  for (char c : s.substr(epos + 2)) exp = exp * 10 + (c - '0');
  if (exp_neg) exp = -exp;
  int decpt = exp + 1;  // digits "d1d2..." mean 0.d1d2... × 10^decpt
  int ndigits = static_cast<int>(digits.size());
  if (decpt <= -4 || decpt > 16) {
    out += digits[0];
    if (ndigits > 1) {
      out += '.';
      out.append(digits, 1);
    }
    out += exp < 0 ? "e-" : "e+";
    int a = std::abs(exp);
    if (a < 10) out += '0';
    out += std::to_string(a);
  } else if (decpt <= 0) {
    out += "0.";
    out.append(static_cast<std::size_t>(-decpt), '0');
    out += digits;
  } else if (decpt >= ndigits) {
    out += digits;
    out.append(static_cast<std::size_t>(decpt - ndigits), '0');
    out += ".0";
  } else {
    out.append(digits, 0, static_cast<std::size_t>(decpt));
    out += '.';
    out.append(digits, static_cast<std::size_t>(decpt));
  }
  return out;
}

bool valid_metric_name(std::string_view n) {
  if (n.empty()) return false;
  for (std::size_t i = 0; i < n.size(); ++i) {
    char c = n[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
              (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

bool valid_label_name(std::string_view n) {
  if (n.empty() || n.starts_with("__")) return false;
  for (std::size_t i = 0; i < n.size(); ++i) {
    char c = n[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
              (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

/// Joins label values into one map key; length prefixes keep ("a,b") and ("a","b") apart.
template <typename Range>
std::string label_key(const Range& values) {
  std::string key;
  for (std::string_view v : values) {
    key += std::to_string(v.size());
    key += ':';
    key += v;
  }
  return key;
}

}  // namespace

std::string format_value(double v) {
  std::string out;
  append_value(out, v);
  return out;
}

void append_value(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "NaN";
    return;
  }
  if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
    return;
  }
  std::string s = python_repr(v);
  // prometheus_client's floatToGoString: Go switches to exponents sooner than Python, so a
  // positive value with more than 6 integer digits is rewritten, including its quirk of
  // always printing "e+0" before the exponent (1e10 → "1e+010").
  std::size_t dot = s.find('.');
  if (v > 0 && dot != std::string::npos && dot > 6) {
    std::string mantissa = s.substr(0, 1) + "." + s.substr(1, dot - 1) + s.substr(dot + 1);
    while (!mantissa.empty() && (mantissa.back() == '0' || mantissa.back() == '.')) {
      mantissa.pop_back();
    }
    out += mantissa;
    out += "e+0";
    out += std::to_string(dot - 1);
    return;
  }
  out += s;
}

void append_escaped_label_value(std::string& out, std::string_view v) {
  for (char c : v) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
}

const char* metric_type_name(MetricType t) {
  switch (t) {
    case MetricType::Counter:
      return "counter";
    case MetricType::Gauge:
      return "gauge";
    case MetricType::Histogram:
      return "histogram";
  }
  return "untyped";
}

// ---- Histogram ----

Histogram::Histogram(std::span<const double> bounds)
    : bounds_(bounds), counts_(bounds.size() + 1, 0) {}

void Histogram::observe(double v) {
  if (std::isnan(v)) return;
  // lower_bound: the first bound >= v, because `le` buckets include their upper bound.
  auto it = std::lower_bound(bounds_.begin(), bounds_.end(), v);
  ++counts_[static_cast<std::size_t>(it - bounds_.begin())];
  sum_ += v;
  ++count_;
}

// ---- FamilyBase ----

FamilyBase::FamilyBase(std::string name, std::string help, MetricType type,
                       std::vector<std::string> label_names, std::size_t max_label_sets)
    : name_(std::move(name)),
      help_(std::move(help)),
      type_(type),
      label_names_(std::move(label_names)),
      max_label_sets_(max_label_sets) {
  DISPATCHERD_ASSERT(valid_metric_name(name_));
  std::unordered_set<std::string_view> seen;
  for (const auto& l : label_names_) {
    DISPATCHERD_ASSERT(valid_label_name(l));
    DISPATCHERD_ASSERT(seen.insert(l).second);
    // `le` is the bucket label of histograms; a user label of that name would collide.
    DISPATCHERD_ASSERT(type_ != MetricType::Histogram || l != "le");
  }
}

void FamilyBase::render_header(std::string& out) const {
  out += "# HELP ";
  out += name_;
  out += ' ';
  for (char c : help_) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  out += "\n# TYPE ";
  out += name_;
  out += ' ';
  out += metric_type_name(type_);
  out += '\n';
}

void FamilyBase::append_series(std::string& out, std::string_view suffix,
                               const std::vector<std::string>& values, std::string_view extra_name,
                               std::string_view extra_value) const {
  out += name_;
  out += suffix;
  if (values.empty() && extra_name.empty()) return;
  out += '{';
  bool first = true;
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (!first) out += ',';
    first = false;
    out += label_names_[i];
    out += "=\"";
    append_escaped_label_value(out, values[i]);
    out += '"';
  }
  if (!extra_name.empty()) {
    if (!first) out += ',';
    out += extra_name;
    out += "=\"";
    append_escaped_label_value(out, extra_value);
    out += '"';
  }
  out += '}';
}

// ---- Family<T> ----

template <typename T>
Family<T>::Family(std::string name, std::string help, MetricType type,
                  std::vector<std::string> label_names, std::size_t max_label_sets,
                  std::vector<double> bounds)
    : FamilyBase(std::move(name), std::move(help), type, std::move(label_names), max_label_sets),
      bounds_(std::move(bounds)) {
  overflow_ = std::make_unique<T>(make_metric());
  // An unlabelled family has exactly one child and shows it from the start (`name 0.0`),
  // as Python's client does.
  if (this->label_names().empty()) find_or_add({});
}

template <typename T>
T Family<T>::make_metric() const {
  if constexpr (std::is_same_v<T, Histogram>) {
    return Histogram(std::span<const double>(bounds_));
  } else {
    return T{};
  }
}

template <typename T>
T& Family<T>::with(std::initializer_list<std::string_view> label_values) {
  DISPATCHERD_ASSERT(label_values.size() == label_names().size());
  auto it = index_.find(label_key(label_values));
  if (it != index_.end()) return children_[it->second].metric;
  return find_or_add(std::vector<std::string>(label_values.begin(), label_values.end()));
}

template <typename T>
T& Family<T>::with_values(std::span<const std::string> label_values) {
  DISPATCHERD_ASSERT(label_values.size() == label_names().size());
  auto it = index_.find(label_key(label_values));
  if (it != index_.end()) return children_[it->second].metric;
  return find_or_add(std::vector<std::string>(label_values.begin(), label_values.end()));
}

template <typename T>
T& Family<T>::find_or_add(std::vector<std::string> values) {
  std::string key = label_key(values);
  auto it = index_.find(key);
  if (it != index_.end()) return children_[it->second].metric;
  if (children_.size() >= max_label_sets()) {
    note_refused();
    return *overflow_;
  }
  children_.push_back(Child{std::move(values), make_metric()});
  index_.emplace(std::move(key), children_.size() - 1);
  return children_.back().metric;
}

template <typename T>
bool Family<T>::render(std::string& out) const {
  render_header(out);
  for (const Child& c : children_) {
    if constexpr (std::is_same_v<T, Histogram>) {
      // Python's order: cumulative buckets, +Inf, then _count and _sum.
      const auto& counts = c.metric.bucket_counts();
      std::uint64_t acc = 0;
      for (std::size_t i = 0; i < counts.size(); ++i) {
        acc += counts[i];
        std::string le = i < bounds_.size() ? format_value(bounds_[i]) : "+Inf";
        append_series(out, "_bucket", c.values, "le", le);
        out += ' ';
        append_value(out, static_cast<double>(acc));
        out += '\n';
      }
      append_series(out, "_count", c.values);
      out += ' ';
      append_value(out, static_cast<double>(c.metric.count()));
      out += '\n';
      append_series(out, "_sum", c.values);
      out += ' ';
      append_value(out, c.metric.sum());
      out += '\n';
    } else {
      append_series(out, "", c.values);
      out += ' ';
      append_value(out, c.metric.value());
      out += '\n';
    }
  }
  return true;
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

// ---- collect-time families ----

namespace {

class CollectFamily final : public FamilyBase {
 public:
  CollectFamily(std::string name, std::string help, MetricType type,
                std::vector<std::string> label_names, std::size_t max_label_sets, CollectFn fn)
      : FamilyBase(std::move(name), std::move(help), type, std::move(label_names), max_label_sets),
        fn_(std::move(fn)) {
    DISPATCHERD_ASSERT(type != MetricType::Histogram);
  }

  bool render(std::string& out) const override {
    render_header(out);
    Sink sink(*this, out);
    fn_(sink);
    if (sink.failed) LOG_WARNING("metrics: collecting " << name() << " failed: " << sink.reason);
    return !sink.failed;
  }

 private:
  struct Sink final : SampleSink {
    Sink(const CollectFamily& f, std::string& o) : family(f), out(o) {}
    void add(std::initializer_list<std::string_view> label_values, double value) override {
      DISPATCHERD_ASSERT(label_values.size() == family.label_names().size());
      if (!admit()) return;
      std::vector<std::string> values(label_values.begin(), label_values.end());
      emit(values, value);
    }
    void add_values(std::span<const std::string> label_values, double value) override {
      DISPATCHERD_ASSERT(label_values.size() == family.label_names().size());
      if (!admit()) return;
      std::vector<std::string> values(label_values.begin(), label_values.end());
      emit(values, value);
    }
    void fail(std::string_view why) override {
      failed = true;
      reason = why;
    }
    bool admit() {
      // An unlabelled family has one series; a labelled one is bounded like stored ones.
      std::size_t limit = family.label_names().empty() ? 1 : family.max_label_sets();
      if (emitted >= limit) {
        family.note_refused();
        return false;
      }
      ++emitted;
      return true;
    }
    void emit(const std::vector<std::string>& values, double value) {
      family.append_series(out, "", values);
      out += ' ';
      append_value(out, value);
      out += '\n';
    }
    const CollectFamily& family;
    std::string& out;
    std::size_t emitted = 0;
    bool failed = false;
    std::string reason;
  };

  CollectFn fn_;
};

}  // namespace

// ---- Registry ----

Registry::Registry(std::size_t default_max_label_sets)
    : default_max_label_sets_(default_max_label_sets) {}

std::size_t Registry::bound(std::size_t requested) const {
  return requested == 0 ? default_max_label_sets_ : requested;
}

void Registry::add(std::unique_ptr<FamilyBase> family) {
  for (const auto& f : families_) {
    if (f->name() == family->name()) {
      LOG_CRITICAL("metrics: family " << family->name() << " registered twice");
      ::abort();
    }
  }
  families_.push_back(std::move(family));
}

CounterFamily& Registry::counter(std::string name, std::string help,
                                 std::vector<std::string> label_names, std::size_t max_label_sets) {
  auto f = std::make_unique<CounterFamily>(std::move(name), std::move(help), MetricType::Counter,
                                           std::move(label_names), bound(max_label_sets));
  CounterFamily& ref = *f;
  add(std::move(f));
  return ref;
}

GaugeFamily& Registry::gauge(std::string name, std::string help,
                             std::vector<std::string> label_names, std::size_t max_label_sets) {
  auto f = std::make_unique<GaugeFamily>(std::move(name), std::move(help), MetricType::Gauge,
                                         std::move(label_names), bound(max_label_sets));
  GaugeFamily& ref = *f;
  add(std::move(f));
  return ref;
}

HistogramFamily& Registry::histogram(std::string name, std::string help,
                                     std::span<const double> bounds,
                                     std::vector<std::string> label_names,
                                     std::size_t max_label_sets) {
  for (std::size_t i = 0; i < bounds.size(); ++i) {
    DISPATCHERD_ASSERT(std::isfinite(bounds[i]));
    DISPATCHERD_ASSERT(i == 0 || bounds[i - 1] < bounds[i]);
  }
  auto f = std::make_unique<HistogramFamily>(
      std::move(name), std::move(help), MetricType::Histogram, std::move(label_names),
      bound(max_label_sets), std::vector<double>(bounds.begin(), bounds.end()));
  HistogramFamily& ref = *f;
  add(std::move(f));
  return ref;
}

void Registry::collect(std::string name, std::string help, MetricType type,
                       std::vector<std::string> label_names, CollectFn fn,
                       std::size_t max_label_sets) {
  add(std::make_unique<CollectFamily>(std::move(name), std::move(help), type,
                                      std::move(label_names), bound(max_label_sets),
                                      std::move(fn)));
}

void Registry::collect_value(std::string name, std::string help, MetricType type,
                             std::function<double()> fn) {
  collect(std::move(name), std::move(help), type, {},
          [fn = std::move(fn)](SampleSink& sink) { sink.add({}, fn()); });
}

bool Registry::render_to(std::string& out) const {
  for (const auto& f : families_) {
    if (!f->render(out)) return false;
  }
  return true;
}

std::string Registry::render() const {
  std::string out;
  render_to(out);
  return out;
}

std::optional<std::string> Registry::try_render() const {
  std::string out;
  if (!render_to(out)) return std::nullopt;
  return out;
}

std::uint64_t Registry::refused_total() const {
  std::uint64_t n = 0;
  for (const auto& f : families_) n += f->refused();
  return n;
}

}  // namespace dispatcherd::metrics
