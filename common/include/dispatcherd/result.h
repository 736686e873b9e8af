#pragma once
// Result<T>: a value or an error message, for operations whose failure the caller decides
// about (config loading, decoding, system calls at start-up). Exceptions from third-party
// libraries are caught at the module edge and turned into a Result.

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace dispatcherd {

/// An error with a human-readable message; config errors already carry `file:line:col: `.
struct Error {
  std::string message;
};

/// Either a T or an Error. Test with `ok()`/`operator bool`, then use `value()` or `error()`.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Result(Error error) : v_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

  /// True when a value is held.
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  /// The value; only valid when ok().
  T& value() & {
    assert(ok());
    return std::get<0>(v_);
  }
  const T& value() const& {
    assert(ok());
    return std::get<0>(v_);
  }
  T&& value() && {
    assert(ok());
    return std::get<0>(std::move(v_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  /// The error; only valid when !ok().
  const Error& error() const {
    assert(!ok());
    return std::get<1>(v_);
  }

 private:
  std::variant<T, Error> v_;
};

/// Result of an operation that yields nothing but may fail.
struct Ok {};
using Status = Result<Ok>;

}  // namespace dispatcherd
