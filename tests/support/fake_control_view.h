#pragma once
// A ControlView backed by plain data: tests fill in the held messages and the reply bodies,
// then read back what the commands did (cancel filters, log levels, submitted messages).

#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "dispatcherd/control/control_view.h"

namespace dispatcherd::testing {

/// The fake view. Messages live in four lists like the service's holders; cancel removes
/// every match from them (running ones stay, marked cancelled, like a signalled worker).
class FakeControlView : public ControlView {
 public:
  /// (worker id, message) pairs in LRU order.
  std::vector<std::pair<int, nlohmann::json>> running;
  std::vector<nlohmann::json> blocked, queued, delayed;

  nlohmann::json workers_body = nlohmann::json::object();
  nlohmann::json producers_body = nlohmann::json::object();
  nlohmann::json metrics_body = {{"enabled", false}};
  nlohmann::json main_body = nlohmann::json::object();
  nlohmann::json chunks_body = nlohmann::json::object();
  nlohmann::json activities_body = {{"results_task", {{"done", false}, {"stack", "reader"}}}};

  /// What the commands did.
  std::vector<TaskFilter> cancel_filters;
  std::vector<int> cancelled_workers;
  std::vector<log::Level> levels_set;
  mutable std::vector<int> activity_limits;  ///< activities() is const in the interface
  std::vector<nlohmann::json> submitted;

  /// submit() fails with this text when set (e.g. no ControlProducer).
  std::optional<std::string> submit_error;
  /// workers() throws this when set, to exercise the command edge.
  std::optional<std::string> workers_throws;

  /// §4.4 order: worker-<id>, blocked-<i>, queued-<i>, delayed-<i>.
  std::vector<ListedMessage> messages() const override {
    std::vector<ListedMessage> out;
    for (const auto& [id, m] : running) out.emplace_back("worker-" + std::to_string(id), m);
    list("blocked-", blocked, out);
    list("queued-", queued, out);
    list("delayed-", delayed, out);
    return out;
  }

  std::vector<ListedMessage> cancel(const TaskFilter& filter) override {
    cancel_filters.push_back(filter);
    std::vector<ListedMessage> out;
    for (const auto& [id, m] : running) {
      if (!filter.matches(m)) continue;
      cancelled_workers.push_back(id);
      out.emplace_back("worker-" + std::to_string(id), m);
    }
    take("blocked-", blocked, filter, out);
    take("queued-", queued, filter, out);
    take("delayed-", delayed, filter, out);
    return out;
  }

  nlohmann::json workers() const override {
    if (workers_throws) throw std::runtime_error(*workers_throws);
    return workers_body;
  }
  nlohmann::json producers() const override { return producers_body; }
  nlohmann::json metrics() const override { return metrics_body; }
  nlohmann::json main_status() const override { return main_body; }
  nlohmann::json chunks() const override { return chunks_body; }
  nlohmann::json activities(int limit) const override {
    activity_limits.push_back(limit);
    return activities_body;
  }

  log::Level set_log_level(log::Level level) override {
    log::Level previous = levels_set.empty() ? log::Level{0} : levels_set.back();
    levels_set.push_back(level);
    return previous;
  }

  Status submit(const nlohmann::json& message) override {
    if (submit_error) return Error{*submit_error};
    submitted.push_back(message);
    return Ok{};
  }

 private:
  static void list(const std::string& prefix, const std::vector<nlohmann::json>& from,
                   std::vector<ListedMessage>& out) {
    for (std::size_t i = 0; i < from.size(); ++i)
      out.emplace_back(prefix + std::to_string(i), from[i]);
  }
  // Keys are positions before removal, and every match goes (not every other one: quirk #4).
  static void take(const std::string& prefix, std::vector<nlohmann::json>& from,
                   const TaskFilter& filter, std::vector<ListedMessage>& out) {
    std::vector<nlohmann::json> kept;
    for (std::size_t i = 0; i < from.size(); ++i) {
      if (filter.matches(from[i]))
        out.emplace_back(prefix + std::to_string(i), from[i]);
      else
        kept.push_back(from[i]);
    }
    from.swap(kept);
  }
};

}  // namespace dispatcherd::testing
