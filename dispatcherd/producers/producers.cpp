#include "dispatcherd/producers/producers.h"

#include "dispatcherd/log.h"

namespace dispatcherd {

nlohmann::json Producer::status(MonoTime now) const {
  return {{"produced_count", produced_}, {"uptime_seconds", now - created_}};
}

OnStartProducer::OnStartProducer(EventLoop& loop, std::vector<OnStartTask> tasks,
                                 MessageSubmit submit)
    : Producer(loop.now()), tasks_(std::move(tasks)), submit_(std::move(submit)) {}

void OnStartProducer::start() {
  for (std::size_t i = 0; i < tasks_.size(); ++i) {
    nlohmann::json msg = tasks_[i].extra.is_object() ? tasks_[i].extra : nlohmann::json::object();
    msg["task"] = tasks_[i].task;
    msg["uuid"] = "on-start-" + std::to_string(i);
    ++produced_;
    submit_(std::move(msg));
  }
}

ScheduledProducer::ScheduledProducer(EventLoop& loop, std::vector<ScheduledTask> schedule,
                                     MessageSubmit submit)
    : Producer(loop.now()), loop_(loop), schedule_(std::move(schedule)), submit_(std::move(submit)) {}

ScheduledProducer::~ScheduledProducer() { stop(); }

void ScheduledProducer::start() {
  timers_.assign(schedule_.size(), 0);
  for (std::size_t i = 0; i < schedule_.size(); ++i) arm(i);
}

void ScheduledProducer::arm(std::size_t index) {
  // Re-armed from the firing time, so a stalled loop delays the next run rather than
  // bursting to catch up (upstream does the same).
  timers_[index] = loop_.after(schedule_[index].schedule, [this, index] {
    const ScheduledTask& s = schedule_[index];
    nlohmann::json msg = s.extra.is_object() ? s.extra : nlohmann::json::object();
    msg["task"] = s.task;
    msg["uuid"] = "sch-" + std::to_string(++produced_);
    submit_(std::move(msg));
    arm(index);
  });
}

void ScheduledProducer::stop() {
  for (auto& t : timers_) {
    if (t) loop_.cancel(t);
    t = 0;
  }
}

ControlProducer::ControlProducer(EventLoop& loop) : Producer(loop.now()) {}

}  // namespace dispatcherd
