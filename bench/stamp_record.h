#pragma once
// The record the `bench.stamp` task appends (bench/tasks.cpp) and the bench tools read:
// 72 bytes, written with one write(2) on an O_APPEND descriptor, so records of concurrent
// workers never interleave. bench/harness.py reads the same layout ("<40sqqiiq").

#include <cstdint>

namespace bench {

struct StampRecord {
  char uuid[40];           ///< the task's uuid, NUL-padded (cut at 39 bytes)
  std::int64_t start_ns;   ///< CLOCK_REALTIME when the task function was entered
  std::int64_t pub_ns;     ///< kwargs "t_pub_ns": CLOCK_REALTIME the publisher stamped, or 0
  std::int32_t worker_id;  ///< the worker that ran it
  std::int32_t pid;        ///< that worker's pid
  /// CLOCK_MONOTONIC at entry minus TaskContext::received_at(): main's read of the
  /// notification → this task's start, the latency the service adds (0 when not known)
  std::int64_t added_ns;
};
static_assert(sizeof(StampRecord) == 72, "the readers assume 72-byte records");

}  // namespace bench
