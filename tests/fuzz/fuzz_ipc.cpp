// libFuzzer target: a worker's byte stream through the main ⇄ worker IPC decoder
// (dispatcherd/pool/ipc.h), fed in pieces of fuzzer-chosen sizes. Invariants: nothing crashes
// or over-reads; frames come out the same however the stream is split; every payload that
// decodes re-encodes to the same bytes; once corrupt, the reader stays corrupt.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "dispatcherd/pool/ipc.h"

using namespace dispatcherd::ipc;

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

// Feeds `stream` split every `step` bytes (0: all at once); the frames and whether it ended
// corrupt.
std::vector<Frame> read_all(const std::string& stream, std::size_t step, bool& corrupt) {
  FrameReader r;
  std::vector<Frame> out;
  std::size_t off = 0;
  do {
    std::size_t n = step == 0 ? stream.size() - off : std::min(step, stream.size() - off);
    r.feed(stream.data() + off, n);
    off += n;
    while (auto f = r.next()) out.push_back(std::move(*f));
    if (r.corrupt()) {
      check(!r.next());
      break;
    }
  } while (off < stream.size());
  corrupt = r.corrupt();
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::size_t step = data[0] % 64;
  const std::string stream(reinterpret_cast<const char*>(data + 1), size - 1);

  bool corrupt_whole = false, corrupt_split = false;
  std::vector<Frame> whole = read_all(stream, 0, corrupt_whole);
  std::vector<Frame> split = read_all(stream, step, corrupt_split);
  check(corrupt_whole == corrupt_split);
  check(whole.size() == split.size());
  std::string again;
  for (std::size_t i = 0; i < whole.size(); ++i) {
    const Frame& f = whole[i];
    check(f.type == split[i].type && f.seq == split[i].seq && f.payload == split[i].payload);
    append_frame(again, f.type, f.seq, f.payload);
    if (f.type == FrameType::kTask) {
      if (auto t = decode_task(f.payload)) check(encode_task(*t) == f.payload);
    } else if (f.type == FrameType::kDone) {
      if (auto d = decode_done(f.payload)) {
        std::string re = encode_done(*d);
        // Only the stopping flag is normalised (any non-zero byte reads as true).
        check(re.size() == f.payload.size());
        check(re.substr(2) == f.payload.substr(2) && re[0] == f.payload[0]);
      }
    }
  }
  // The frames read are exactly a prefix of the stream, but for the reserved flags field
  // (header bytes 6-7), which the reader ignores and append_frame writes as 0.
  check(again.size() <= stream.size());
  for (std::size_t off = 0; off < again.size();) {
    std::uint32_t len;
    std::memcpy(&len, again.data() + off, sizeof len);
    const std::size_t end = off + kHeaderBytes + len;
    for (std::size_t i = off; i < end; ++i)
      if (i - off != 6 && i - off != 7) check(again[i] == stream[i]);
    off = end;
  }
  return 0;
}
