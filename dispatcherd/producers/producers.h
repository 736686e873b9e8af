#pragma once
// The in-process producers of upstream-spec §9: OnStartProducer (each configured task once at
// start, uuid on-start-<i>), ScheduledProducer (each entry every `schedule` seconds, first one
// `schedule` after start, uuid sch-<n> from one counter shared by all entries) and
// ControlProducer (passive: enables the `run` control command). Brokers are producers too;
// their status comes from the broker itself.

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "dispatcherd/config.h"
#include "dispatcherd/loop/event_loop.h"

namespace dispatcherd {

/// Hands a task message object to the service's pipeline (no channel).
using MessageSubmit = std::function<void(nlohmann::json message)>;

/// Common shape: a name for `producers`, start/stop, and a status object.
class Producer {
 public:
  explicit Producer(MonoTime created) : created_(created) {}
  virtual ~Producer() = default;
  /// "on-start-producer", "scheduled-producer" or "control-producer".
  virtual std::string name() const = 0;
  /// Begins producing.
  virtual void start() {}
  /// Stops producing (timers cancelled).
  virtual void stop() {}
  /// `producers` entry: produced_count and uptime_seconds.
  virtual nlohmann::json status(MonoTime now) const;
  /// Messages produced so far.
  std::uint64_t produced() const { return produced_; }

 protected:
  std::uint64_t produced_ = 0;
  MonoTime created_;
};

/// Emits every task_list entry once at start, in order.
class OnStartProducer : public Producer {
 public:
  OnStartProducer(EventLoop& loop, std::vector<OnStartTask> tasks, MessageSubmit submit);
  std::string name() const override { return "on-start-producer"; }
  void start() override;

 private:
  std::vector<OnStartTask> tasks_;
  MessageSubmit submit_;
};

/// Emits each task_schedule entry every `schedule` seconds (no catch-up after a stall).
class ScheduledProducer : public Producer {
 public:
  ScheduledProducer(EventLoop& loop, std::vector<ScheduledTask> schedule, MessageSubmit submit);
  ~ScheduledProducer() override;
  std::string name() const override { return "scheduled-producer"; }
  void start() override;
  void stop() override;

 private:
  void arm(std::size_t index);

  EventLoop& loop_;
  std::vector<ScheduledTask> schedule_;
  MessageSubmit submit_;
  std::vector<EventLoop::TimerId> timers_;
};

/// Passive: counts tasks submitted with the `run` control command.
class ControlProducer : public Producer {
 public:
  explicit ControlProducer(EventLoop& loop);
  std::string name() const override { return "control-producer"; }
  /// Records one `run` submission.
  void count() { ++produced_; }
};

}  // namespace dispatcherd
