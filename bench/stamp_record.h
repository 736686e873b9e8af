#pragma once
// The record the `bench.stamp` task appends (bench/tasks.cpp) and the bench tools read:
// 64 bytes, written with one write(2) on an O_APPEND descriptor, so records of concurrent
// workers never interleave. bench/bench.py reads the same layout ("<40sqqii").

#include <cstdint>

namespace bench {

struct StampRecord {
  char uuid[40];           ///< the task's uuid, NUL-padded (cut at 39 bytes)
  std::int64_t start_ns;   ///< CLOCK_REALTIME when the task function was entered
  std::int64_t pub_ns;     ///< kwargs "t_pub_ns": CLOCK_REALTIME the publisher stamped, or 0
  std::int32_t worker_id;  ///< the worker that ran it
  std::int32_t pid;        ///< that worker's pid
};
static_assert(sizeof(StampRecord) == 64, "the readers assume 64-byte records");

}  // namespace bench
