#pragma once
// The main ⇄ worker channel: a pipe each way carrying binary frames. Every frame has a
// 16-byte header (payload length, type, flags, task sequence number) followed by the payload.
// The sequence number ties a `done`, a control call or a cancel to one task, so a late event
// can never be mistaken for the next task's. Frames may be larger than the pipe buffer: the
// reader reassembles them from any split.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace dispatcherd::ipc {

/// What a frame carries.
enum class FrameType : std::uint16_t {
  // main → worker
  kTask = 1,          ///< payload: encode_task()
  kStop = 2,          ///< no payload: finish and exit
  kControlReply = 3,  ///< payload: JSON text of the result of a bind control call
  // worker → main
  kReady = 10,     ///< no payload: started, hooks ran, waiting for work
  kDone = 11,      ///< payload: encode_done()
  kControl = 12,   ///< payload: JSON {"command": ..., "control_data": {...}}
  kShutdown = 13,  ///< no payload: about to exit
};

/// Size of the fixed frame header.
constexpr std::size_t kHeaderBytes = 16;
/// Largest payload accepted; a larger length means a corrupt stream.
constexpr std::uint32_t kMaxPayloadBytes = 256u << 20;

/// One decoded frame.
struct Frame {
  FrameType type{};
  std::uint64_t seq = 0;
  std::string payload;
};

/// Appends one frame (header + payload) to `out`.
void append_frame(std::string& out, FrameType type, std::uint64_t seq, std::string_view payload);

/// Reassembles frames from a byte stream split at arbitrary points.
class FrameReader {
 public:
  /// Adds received bytes.
  void feed(const char* data, std::size_t n) { buf_.append(data, n); }
  /// The next complete frame, if any. After a corrupt header, returns nullopt forever and
  /// corrupt() is true.
  std::optional<Frame> next();
  /// True when the stream carried an impossible header (unknown type or oversized length).
  bool corrupt() const { return corrupt_; }
  /// Bytes buffered but not yet returned as frames.
  std::size_t buffered() const { return buf_.size() - pos_; }

 private:
  std::string buf_;
  std::size_t pos_ = 0;
  bool corrupt_ = false;
};

/// A task as sent to a worker: the message body plus the fields main added (§2.3 steps 4-5),
/// so main never re-encodes the JSON it received.
struct TaskPayload {
  std::string_view uuid;     ///< the uuid main assigned or read
  std::string_view channel;  ///< "" when the message came from no channel
  std::string_view body;     ///< the message JSON text
  double received_at = 0;    ///< CLOCK_MONOTONIC seconds when main read the message (0: unknown)
};
std::string encode_task(const TaskPayload& t);
/// Appends a whole kTask frame carrying `t` to `out`: the same bytes as append_frame() with
/// encode_task(), without building the payload on its own first.
void append_task_frame(std::string& out, std::uint64_t seq, const TaskPayload& t);
/// Views into `payload`; nullopt when malformed.
std::optional<TaskPayload> decode_task(std::string_view payload);

/// How a task ended, as the worker saw it (main alone knows whether a cancel was a timeout).
enum class TaskStatus : std::uint8_t {
  kSucceeded = 0,
  kFailed = 1,     ///< threw, unknown task, bad arguments, command exited non-zero
  kCancelled = 2,  ///< stopped at its cancel flag (TaskCancelled)
};

/// The `done` event.
struct DonePayload {
  TaskStatus status = TaskStatus::kSucceeded;
  bool is_stopping = false;  ///< the worker exits after this
  double time_started = 0;   ///< epoch seconds
  double time_finish = 0;    ///< epoch seconds
  std::string result;        ///< JSON text of the result ("null" when none)
  std::string error;         ///< one-line reason when failed
};
std::string encode_done(const DonePayload& d);
std::optional<DonePayload> decode_done(std::string_view payload);

}  // namespace dispatcherd::ipc
