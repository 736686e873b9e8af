#pragma once
// QueuedTask: a task message on its way from the pipeline to a worker, as the processors
// (delayer, blocker) and the pool hold it. Compact on purpose, since a backlog holds millions:
// the original JSON text and the uuid, channel and task name share one allocation, next to
// the few fields main acts on; never a parsed JSON tree.

#include <cstdint>
#include <string>
#include <string_view>

#include "dispatcherd/loop/event_loop.h"
#include "dispatcherd/message.h"

namespace dispatcherd {

/// A task on its way to a worker: the message text plus what main read from it.
struct QueuedTask {
  QueuedTask() = default;
  /// Copies the four texts into one buffer.
  QueuedTask(std::string_view body, std::string_view uuid, std::string_view channel,
             std::string_view task)
      : body_len_(static_cast<std::uint32_t>(body.size())),
        uuid_len_(static_cast<std::uint32_t>(uuid.size())),
        channel_len_(static_cast<std::uint32_t>(channel.size())) {
    text_.reserve(body.size() + uuid.size() + channel.size() + task.size());
    text_.append(body).append(uuid).append(channel).append(task);
  }

  /// The message JSON text, as received (or as main built it).
  std::string_view body() const { return std::string_view(text_).substr(0, body_len_); }
  /// The uuid, assigned or read (§2.3 step 4).
  std::string_view uuid() const { return std::string_view(text_).substr(body_len_, uuid_len_); }
  /// The channel it came from; "" when none.
  std::string_view channel() const {
    return std::string_view(text_).substr(body_len_ + uuid_len_, channel_len_);
  }
  /// The `task` name.
  std::string_view task() const {
    return std::string_view(text_).substr(body_len_ + uuid_len_ + channel_len_);
  }

  // Declared in this order so that the struct packs into 72 bytes.
 private:
  std::string text_;  // body, uuid, channel, task, back to back
  std::uint32_t body_len_ = 0, uuid_len_ = 0, channel_len_ = 0;

 public:
  OnDuplicate on_duplicate = OnDuplicate::Parallel;
  double timeout = 0;          ///< seconds of run time before cancel; 0 = none
  std::uint64_t identity = 0;  ///< identity_hash() of (task, args, kwargs)
  MonoTime received_at = 0;    ///< when main read it (for the latency histogram)
};

static_assert(sizeof(void*) != 8 || sizeof(QueuedTask) <= 72,
              "QueuedTask grew: a backlog holds millions of them");

}  // namespace dispatcherd
