#pragma once
// Internal to dispatcherd_common: the hash behind identity_hash() (message.cpp, from a parsed
// json) and scan_task_message() (message_scan.cpp, straight from the text). Both walk values
// in text order, so the definition must not depend on the order of an object's members: an
// object hashes as the sum of its members' own hashes. The two walks must agree bit for bit;
// the message_scan tests compare them on every message they try.

#include <cstdint>
#include <cstring>
#include <string_view>

namespace dispatcherd::text {

/// FNV-1a over a tagged walk of one JSON value, finished with a murmur3 mixer (FNV's low bits
/// are weak). Tags: null 0, false 1, true 2, number 3, string 4, array 5, object 6, depth cap
/// 0xFF.
struct IdentityHasher {
  std::uint64_t h = 0xcbf29ce484222325ULL;

  void bytes(const void* p, std::size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    for (std::size_t i = 0; i < n; ++i) {
      h ^= b[i];
      h *= 0x100000001b3ULL;
    }
  }
  void u8(unsigned char v) {
    h ^= v;
    h *= 0x100000001b3ULL;
  }
  void u64(std::uint64_t v) { bytes(&v, sizeof v); }
  /// A string: length prefix, so ["ab","c"] and ["a","bc"] differ.
  void str(std::string_view s) {
    u8(4);
    u64(s.size());
    bytes(s.data(), s.size());
  }
  /// Any number, as a double: nlohmann's == compares 1 with 1.0 (and signed with unsigned)
  /// through a double, so equal values must hash alike. -0.0 == 0.0.
  void number(double d) {
    if (d == 0) d = 0;
    std::uint64_t bits;
    std::memcpy(&bits, &d, sizeof bits);
    u8(3);
    u64(bits);
  }
  /// An object's header: its member count and the sum of finish() of each member's hasher
  /// (key via str(), then the value), so member order does not matter.
  void object(std::uint64_t members, std::uint64_t member_sum) {
    u8(6);
    u64(members);
    u64(member_sum);
  }
  /// An array: its length and finish() of one hasher that saw its elements in order (a
  /// text walk learns the length only at the end).
  void array(std::uint64_t length, std::uint64_t elements_hash) {
    u8(5);
    u64(length);
    u64(elements_hash);
  }
  std::uint64_t finish() const {
    std::uint64_t x = h;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
  }
};

/// identity_hash() from the finished hashes of `task`, `args` and `kwargs` (each of a value
/// alone; an absent field hashes like null).
inline std::uint64_t combine_identity(std::uint64_t task, std::uint64_t args,
                                      std::uint64_t kwargs) {
  IdentityHasher h;
  h.u64(task);
  h.u64(args);
  h.u64(kwargs);
  return h.finish();
}

/// finish() of a hasher that saw only null: the hash of an absent field.
inline std::uint64_t null_hash() {
  IdentityHasher h;
  h.u8(0);
  return h.finish();
}

}  // namespace dispatcherd::text
