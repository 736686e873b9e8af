#include "dispatcherd/processors/delayer.h"

#include <cmath>

#include "dispatcherd/log.h"

namespace dispatcherd {

Delayer::Delayer(std::size_t max_delayed) : max_delayed_(max_delayed) {}

bool Delayer::add(QueuedTask message, double due, bool is_control) {
  // NaN would break the map's ordering; `delay` is validated finite before it gets here.
  DISPATCHERD_ASSERT(!std::isnan(due));
  if (delayed_.size() >= max_delayed_) {
    ++overflow_;
    // One WARNING per burst: the rest of a burst would flood the log with the same line.
    if (!overflow_warned_) {
      overflow_warned_ = true;
      LOG_WARNING("Delayed message set full (max_delayed_tasks="
                  << max_delayed_ << "), dropping " << (is_control ? "control" : "task")
                  << " message uuid=" << message.uuid() << ", overflow_count=" << overflow_);
    } else {
      LOG_DEBUG("Delayed message set full, dropping message uuid="
                << message.uuid() << ", overflow_count=" << overflow_);
    }
    return false;
  }
  overflow_warned_ = false;
  const Key key{due, next_seq_++};
  delayed_.emplace(key,
                   Delayed{.message = std::move(message), .due = due, .is_control = is_control});
  return true;
}

std::optional<double> Delayer::next_due() const {
  if (delayed_.empty()) return std::nullopt;
  return delayed_.begin()->first.first;
}

std::vector<Delayed> Delayer::take_due(double now) {
  std::vector<Delayed> out;
  while (!delayed_.empty() && delayed_.begin()->first.first <= now) {
    out.push_back(std::move(delayed_.extract(delayed_.begin()).mapped()));
  }
  return out;
}

std::vector<Delayed> Delayer::remove_if(const std::function<bool(const Delayed&)>& match) {
  std::vector<Delayed> out;
  for (auto it = delayed_.begin(); it != delayed_.end();) {
    if (match(it->second)) {
      out.push_back(std::move(it->second));
      it = delayed_.erase(it);
    } else {
      ++it;
    }
  }
  return out;
}

void Delayer::for_each(const std::function<void(const Delayed&)>& visit) const {
  for (const auto& entry : delayed_) visit(entry.second);
}

std::vector<Delayed> Delayer::abandon_all() {
  std::vector<Delayed> out;
  out.reserve(delayed_.size());
  for (auto& entry : delayed_) out.push_back(std::move(entry.second));
  delayed_.clear();
  return out;
}

DelayerCounters Delayer::counters() const {
  return DelayerCounters{.overflow = overflow_, .delayed_now = delayed_.size()};
}

}  // namespace dispatcherd
