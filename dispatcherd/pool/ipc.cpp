#include "dispatcherd/pool/ipc.h"

#include <cstring>

namespace dispatcherd::ipc {
namespace {

template <class T>
void put(std::string& out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  out.append(b, sizeof(T));
}

template <class T>
bool get(std::string_view& in, T& v) {
  if (in.size() < sizeof(T)) return false;
  std::memcpy(&v, in.data(), sizeof(T));
  in.remove_prefix(sizeof(T));
  return true;
}

void put_str(std::string& out, std::string_view s) {
  put<std::uint32_t>(out, static_cast<std::uint32_t>(s.size()));
  out.append(s);
}

bool get_str(std::string_view& in, std::string_view& s) {
  std::uint32_t n;
  if (!get(in, n) || in.size() < n) return false;
  s = in.substr(0, n);
  in.remove_prefix(n);
  return true;
}

bool known_type(std::uint16_t t) {
  switch (static_cast<FrameType>(t)) {
    case FrameType::kTask:
    case FrameType::kStop:
    case FrameType::kControlReply:
    case FrameType::kReady:
    case FrameType::kDone:
    case FrameType::kControl:
    case FrameType::kShutdown:
      return true;
  }
  return false;
}

void put_header(std::string& out, FrameType type, std::uint64_t seq, std::size_t payload_bytes) {
  put<std::uint32_t>(out, static_cast<std::uint32_t>(payload_bytes));
  put<std::uint16_t>(out, static_cast<std::uint16_t>(type));
  put<std::uint16_t>(out, 0);  // flags, reserved
  put<std::uint64_t>(out, seq);
}

}  // namespace

void append_frame(std::string& out, FrameType type, std::uint64_t seq, std::string_view payload) {
  put_header(out, type, seq, payload.size());
  out.append(payload);
}

std::optional<Frame> FrameReader::next() {
  if (corrupt_) return std::nullopt;
  std::string_view in(buf_.data() + pos_, buf_.size() - pos_);
  if (in.size() < kHeaderBytes) return std::nullopt;
  std::uint32_t len;
  std::uint16_t type, flags;
  std::uint64_t seq;
  get(in, len);
  get(in, type);
  get(in, flags);
  get(in, seq);
  if (len > kMaxPayloadBytes || !known_type(type)) {
    corrupt_ = true;
    return std::nullopt;
  }
  if (in.size() < len) return std::nullopt;
  Frame f{static_cast<FrameType>(type), seq, std::string(in.substr(0, len))};
  pos_ += kHeaderBytes + len;
  // Compact once the consumed prefix dominates, so the buffer does not grow without bound.
  if (pos_ == buf_.size()) {
    buf_.clear();
    pos_ = 0;
  } else if (pos_ > 65536 && pos_ * 2 > buf_.size()) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
  return f;
}

namespace {

// A task payload: received_at (8 bytes), then uuid, channel and body, each length-prefixed.
std::size_t task_bytes(const TaskPayload& t) {
  return 8 + 12 + t.uuid.size() + t.channel.size() + t.body.size();
}

void put_task(std::string& out, const TaskPayload& t) {
  put<double>(out, t.received_at);
  put_str(out, t.uuid);
  put_str(out, t.channel);
  put_str(out, t.body);
}

}  // namespace

std::string encode_task(const TaskPayload& t) {
  std::string out;
  out.reserve(task_bytes(t));
  put_task(out, t);
  return out;
}

void append_task_frame(std::string& out, std::uint64_t seq, const TaskPayload& t) {
  put_header(out, FrameType::kTask, seq, task_bytes(t));
  put_task(out, t);
}

std::optional<TaskPayload> decode_task(std::string_view payload) {
  TaskPayload t;
  if (!get(payload, t.received_at) || !get_str(payload, t.uuid) || !get_str(payload, t.channel) ||
      !get_str(payload, t.body) || !payload.empty())
    return std::nullopt;
  return t;
}

std::string encode_done(const DonePayload& d) {
  std::string out;
  put<std::uint8_t>(out, static_cast<std::uint8_t>(d.status));
  put<std::uint8_t>(out, d.is_stopping ? 1 : 0);
  put<double>(out, d.time_started);
  put<double>(out, d.time_finish);
  put_str(out, d.result);
  put_str(out, d.error);
  return out;
}

std::optional<DonePayload> decode_done(std::string_view payload) {
  DonePayload d;
  std::uint8_t status, stopping;
  std::string_view result, error;
  if (!get(payload, status) || status > 2 || !get(payload, stopping) ||
      !get(payload, d.time_started) || !get(payload, d.time_finish) || !get_str(payload, result) ||
      !get_str(payload, error) || !payload.empty())
    return std::nullopt;
  d.status = static_cast<TaskStatus>(status);
  d.is_stopping = stopping != 0;
  d.result = std::string(result);
  d.error = std::string(error);
  return d;
}

}  // namespace dispatcherd::ipc
