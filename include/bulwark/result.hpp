#pragma once
// result<T> and task<T>: the only two shapes a bulwark operation returns.
//
//   result<T>  Boost.Outcome's basic_result<T, bulwark::error>: a value or an error, never an
//              exception for an expected failure. .value() on an error throws bulwark::bad_result
//              (a std::system_error carrying the code and the detail).
//   task<T>    asio::awaitable<result<T>>: every I/O operation of a concept.
//
// Propagate with BOOST_OUTCOME_TRY (plain functions) and BOOST_OUTCOME_CO_TRY (coroutines).

#include <bulwark/error.hpp>

#include <asio/awaitable.hpp>
#include <boost/outcome/basic_result.hpp>
#include <boost/outcome/policy/base.hpp>
#include <boost/outcome/success_failure.hpp>
#include <boost/outcome/try.hpp>

#include <stdexcept>
#include <system_error>

namespace bulwark {

/// Thrown only by result<T>::value() on an error: a programming error at the call site.
class bad_result : public std::system_error {
public:
  explicit bad_result(const error& e) : std::system_error(e.code(), e.message()), error_(e) {}
  const bulwark::error& error() const noexcept { return error_; }

private:
  bulwark::error error_;
};

namespace detail {
struct result_policy : boost::outcome_v2::policy::base {
  template <class Impl> static constexpr void wide_value_check(Impl&& self) {
    if (!base::_has_value(self)) {
      if (base::_has_error(self)) throw bad_result(base::_error(self));
      throw std::logic_error("bulwark::result: no value");
    }
  }
  template <class Impl> static constexpr void wide_error_check(Impl&& self) {
    if (!base::_has_error(self)) throw std::logic_error("bulwark::result: no error");
  }
  template <class Impl> static constexpr void wide_exception_check(Impl&& self) {
    if (!base::_has_exception(self)) throw std::logic_error("bulwark::result: no exception");
  }
};
} // namespace detail

template <class T> using result = boost::outcome_v2::basic_result<T, error, detail::result_policy>;

template <class T = void> using task = asio::awaitable<result<T>>;

/// The value of a successful result<void>.
inline auto ok() noexcept { return boost::outcome_v2::success(); }

} // namespace bulwark
