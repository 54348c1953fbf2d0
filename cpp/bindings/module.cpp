// The single pybind11 module himari._core: argument checks, conversion to raw pointers, and
// declarations. No trading logic lives here; it is all in cpp/include and cpp/src.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <type_traits>

// <iostream> for its side effect only: with GCC 13+ it makes the link pull in libstdc++'s stream
// initialisation (std::ios_base_library_init), which a statically linked libstdc++ may otherwise
// leave out. Together with --exclude-libs (cpp/CMakeLists.txt) it keeps a toolchain that links
// libstdc++ statically from crashing on the first std::ostringstream (every HIMARI_CHECK message).
#include <iostream>

#include "array_interop.h"
#include "shared.h"
#include "himari/backtest/backtest.h"
#include "himari/common/build_info.h"
#include "himari/common/error.h"
#include "himari/common/rng.h"
#include "himari/cuda/api.h"
#include "himari/dispatch.h"
#include "himari/env/trading_env.h"
#include "himari/filters/ekf.h"
#include "himari/filters/fan.h"

namespace py = pybind11;
using namespace himari;
using bind::as_array;
using bind::describe;
using bind::make_costs;
using bind::PyMarket;


namespace {

std::shared_ptr<MarketData> make_market(const py::handle& open, const py::handle& close, const py::handle& features) {
  auto m = std::make_shared<MarketData>();
  m->open = bind::read_prices(open, "open");
  m->close = bind::read_prices(close, "close");
  HIMARI_CHECK(m->open.size() == m->close.size(), "close: expected the length of open (", m->open.size(), "), got ",
               m->close.size());
  HIMARI_CHECK(m->open.size() >= 2, "open: expected at least 2 bars, got ", m->open.size());
  m->n_bars = static_cast<std::int64_t>(m->open.size());
  if (features.is_none()) {
    m->n_features = 0;
    return m;
  }
  py::array f = as_array(features, "features");
  if (f.ndim() != 2 || !bind::is_float(f) || f.shape(0) != m->n_bars)
    throw ShapeError("features: expected a float32 or float64 array of shape [T, F] with T = " +
                     std::to_string(m->n_bars) + " (len(close)), got " + describe(f));
  m->n_features = f.shape(1);
  m->features.resize(static_cast<std::size_t>(m->n_bars * m->n_features));
  const bool f64 = bind::has_dtype<double>(f.dtype());
  const auto* base = static_cast<const char*>(f.data());
  for (std::int64_t t = 0; t < m->n_bars; ++t)
    for (std::int64_t j = 0; j < m->n_features; ++j) {
      const char* p = base + t * f.strides(0) + j * f.strides(1);
      const double v = f64 ? *reinterpret_cast<const double*>(p) : *reinterpret_cast<const float*>(p);
      if (!std::isfinite(v))
        throw InvalidArgument("features: expected finite values, got " + std::to_string(v) + " at [" +
                              std::to_string(t) + ", " + std::to_string(j) + "]");
      m->features[static_cast<std::size_t>(t * m->n_features + j)] = static_cast<float>(v);
    }
  return m;
}

py::array bool_view(std::vector<std::uint8_t>& v, py::handle owner) {
  return py::array(py::dtype("bool"), {static_cast<py::ssize_t>(v.size())}, {}, v.data(), owner);
}

// Below this many envs a step is shorter than releasing and re-taking the GIL.
constexpr std::int64_t kReleaseGilFromEnvs = 256;

void env_step(TradingEnv& env, const py::handle& actions_obj) {
  py::array a = as_array(actions_obj, "actions");
  const bind::DType kind = bind::action_dtype(a);
  if (a.ndim() != 1 || a.shape(0) != env.num_envs() || kind == bind::kOther)
    throw ShapeError("actions: expected an integer array of shape (" + std::to_string(env.num_envs()) +
                     ",) (one action per env; " + bind::action_dtypes_text() + ", native byte order), got " +
                     describe(a));
  a = bind::c_contiguous(a, "actions");  // documented: copies a strided view
  bind::with_action_type(
      kind, a.data(),
      [&](auto* p) {
        using A = std::remove_const_t<std::remove_pointer_t<decltype(p)>>;
        TradingEnv::check_actions<A>(p, env.num_envs());
        if (env.num_envs() >= kReleaseGilFromEnvs) {
          py::gil_scoped_release release;
          env.step<A>(p);
        } else {
          env.step<A>(p);
        }
      });
}

// Index of the first action outside {0, 1, 2}, or -1. A branch-free pass over blocks first (it
// vectorises: 100 million int8 signals in a few milliseconds instead of ~80 ms), the exact index
// only for a block that has a bad value.
template <typename A>
std::int64_t first_invalid_action(const A* p, std::int64_t n) {
  using U = std::make_unsigned_t<A>;  // negative values become large ones: one compare, same width
  constexpr std::int64_t kBlockSize = 4096;
  for (std::int64_t b = 0; b < n; b += kBlockSize) {
    const std::int64_t e = b + kBlockSize < n ? b + kBlockSize : n;
    U worst = 0;
    for (std::int64_t i = b; i < e; ++i) {
      const U v = static_cast<U>(p[i]);
      worst = v > worst ? v : worst;
    }
    if (worst <= 2) continue;
    for (std::int64_t i = b; i < e; ++i)
      if (static_cast<U>(p[i]) > 2) return i;
  }
  return -1;
}

struct BacktestArgs {
  bind::PriceInput open, close;
  py::array signals;
  BacktestInputs in;
};

BacktestArgs backtest_args(const py::handle& open, const py::handle& close, const py::handle& signals, double fee,
                           double slippage, const std::string& mode, const char* signals_name) {
  BacktestArgs args;
  args.open = bind::price_input(open, "open");
  args.close = bind::price_input(close, "close");
  const auto t_bars = static_cast<py::ssize_t>(args.open.size);
  HIMARI_CHECK(args.close.size == args.open.size, "close: expected the length of open (", args.open.size,
               "), got ", args.close.size);
  HIMARI_CHECK(t_bars >= 2, "open: expected at least 2 bars, got ", t_bars);
  py::array s = as_array(signals, signals_name);
  if (s.ndim() != 2 || s.shape(0) != t_bars || s.shape(1) < 1 || bind::action_dtype(s) == bind::kOther)
    throw ShapeError(std::string(signals_name) + ": expected an integer array of shape [T, M] with T = " +
                     std::to_string(t_bars) + " (len(close)) and M >= 1 (" + bind::action_dtypes_text() +
                     ", native byte order), got " + describe(s));
  s = bind::c_contiguous(s, signals_name);  // documented: inputs may be copied
  bind::with_action_type(bind::action_dtype(s), s.data(), [&](auto* p) {
    // Row T-1 is never acted on, but a bad value there is still a bad input.
    const std::int64_t i = first_invalid_action(p, static_cast<std::int64_t>(s.size()));
    if (i >= 0)
      throw InvalidArgument(std::string(signals_name) + ": expected values in {0, 1, 2} (SELL, HOLD, BUY), got " +
                            std::to_string(static_cast<std::int64_t>(p[i])) + " at [" +
                            std::to_string(i / s.shape(1)) + ", " + std::to_string(i % s.shape(1)) + "]");
  });
  args.signals = s;
  args.in.open = args.open.data;
  args.in.close = args.close.data;
  args.in.n_bars = t_bars;
  args.in.n_strategies = s.shape(1);
  args.in.costs = make_costs(fee, slippage, mode);
  return args;
}

py::tuple backtest(const py::handle& open, const py::handle& close, const py::handle& signals, double fee,
                   double slippage, const std::string& mode, double bars_per_year, bool return_equity,
                   const std::string& device, int threads) {
  require_device(parse_device(device));
  HIMARI_CHECK(std::isfinite(bars_per_year) && bars_per_year > 0.0,
               "bars_per_year: expected a finite value > 0, got ", bars_per_year);
  HIMARI_CHECK(threads >= 0, "threads: expected 0 (every hardware thread) or a count >= 1, got ", threads);
  BacktestArgs args = backtest_args(open, close, signals, fee, slippage, mode, "signals");
  args.in.bars_per_year = bars_per_year;
  const py::ssize_t m = args.in.n_strategies;
  py::array_t<double> metrics({m, static_cast<py::ssize_t>(sizeof(Metrics) / sizeof(double))});
  py::object equity = py::none();
  double* eq = nullptr;
  if (return_equity) {
    py::array_t<double> e({static_cast<py::ssize_t>(args.in.n_bars), m});
    eq = e.mutable_data();
    equity = e;
  }
  auto* met = reinterpret_cast<Metrics*>(metrics.mutable_data());
  bind::with_action_type(bind::action_dtype(args.signals), args.signals.data(), [&](auto* p) {
    py::gil_scoped_release release;
    backtest_signals_cpu(args.in, p, met, eq, threads);
  });
  return py::make_tuple(metrics, equity);
}

// Long-flat, metrics only, by held runs (held_runs.h); the arguments are checked as for backtest.
py::array_t<double> backtest_held_runs(const py::handle& open, const py::handle& close, const py::handle& signals,
                                       double fee, double slippage, const std::string& mode, double bars_per_year,
                                       int threads) {
  HIMARI_CHECK(std::isfinite(bars_per_year) && bars_per_year > 0.0,
               "bars_per_year: expected a finite value > 0, got ", bars_per_year);
  HIMARI_CHECK(threads >= 0, "threads: expected 0 (every hardware thread) or a count >= 1, got ", threads);
  BacktestArgs args = backtest_args(open, close, signals, fee, slippage, mode, "signals");
  HIMARI_CHECK(args.in.costs.mode == PositionMode::kLongFlat,
               "method='held_runs' backtests long_flat signals only, got mode=", mode);
  args.in.bars_per_year = bars_per_year;
  const py::ssize_t m = args.in.n_strategies;
  py::array_t<double> metrics({m, static_cast<py::ssize_t>(sizeof(Metrics) / sizeof(double))});
  auto* met = reinterpret_cast<Metrics*>(metrics.mutable_data());
  bind::with_action_type(bind::action_dtype(args.signals), args.signals.data(), [&](auto* p) {
    py::gil_scoped_release release;
    backtest_signals_runs_cpu(args.in, p, met, threads);
  });
  return metrics;
}

py::tuple replay(const py::handle& open, const py::handle& close, const py::handle& actions, double fee,
                 double slippage, const std::string& mode, const RewardConfig& reward) {
  validate_reward(reward);
  BacktestArgs args = backtest_args(open, close, actions, fee, slippage, mode, "actions");
  const auto t = static_cast<py::ssize_t>(args.in.n_bars);
  const py::ssize_t m = args.in.n_strategies;
  py::array_t<double> rewards({t - 1, m});
  py::array_t<double> equity({t, m});
  py::array_t<double> position({t, m});
  py::array_t<float> account({t, m, static_cast<py::ssize_t>(kAccountColumns)});
  double* r = rewards.mutable_data();
  double* e = equity.mutable_data();
  double* p = position.mutable_data();
  float* acc = account.mutable_data();
  bind::with_action_type(bind::action_dtype(args.signals), args.signals.data(), [&](auto* a) {
    py::gil_scoped_release release;
    replay_actions_cpu(args.in, reward, a, r, e, p, acc);
  });
  return py::make_tuple(rewards, equity, position, account);
}

py::tuple run_ekf(const py::handle& prices_obj, const EkfParams& params, bool return_innovations,
                  const std::string& device) {
  require_device(parse_device(device));
  validate_ekf_params(params);
  py::array prices = as_array(prices_obj, "prices");
  if (prices.ndim() != 2 || !bind::is_float(prices) || prices.shape(1) < 1)
    throw ShapeError("prices: expected a float32 or float64 array of shape [B, T] with T >= 1, got " +
                     describe(prices));
  prices = bind::c_contiguous(prices, "prices");
  const py::ssize_t b = prices.shape(0), t = prices.shape(1);
  const bool f64 = bind::has_dtype<double>(prices.dtype());
  for (py::ssize_t i = 0; i < b * t; ++i) {
    const double v = f64 ? static_cast<const double*>(prices.data())[i] : static_cast<const float*>(prices.data())[i];
    if (!(std::isfinite(v) && v > 0.0))
      throw InvalidArgument("prices: expected finite prices > 0, got " + std::to_string(v) + " at series " +
                            std::to_string(i / t) + ", bar " + std::to_string(i % t));
  }
  py::array_t<double> states({b, t, static_cast<py::ssize_t>(4)});
  py::object innovations = py::none();
  double* inn = nullptr;
  if (return_innovations) {
    py::array_t<double> arr({b, t, static_cast<py::ssize_t>(2)});
    inn = arr.mutable_data();
    innovations = arr;
  }
  double* st = states.mutable_data();
  {
    py::gil_scoped_release release;
    if (f64)
      ekf_cpu(static_cast<const double*>(prices.data()), b, t, params, st, inn);
    else
      ekf_cpu(static_cast<const float*>(prices.data()), b, t, params, st, inn);
  }
  return py::make_tuple(states, innovations);
}

py::array_t<double> run_fan(const py::handle& x_obj, const py::handle& pieces_obj, std::int64_t window,
                            std::int64_t top_k) {
  py::array x = as_array(x_obj, "x");
  if (x.ndim() != 2 || !bind::has_dtype<double>(x.dtype()))
    throw ShapeError("x: expected a float64 array of shape [T, F], got " + describe(x));
  x = bind::c_contiguous(x, "x");
  py::array pieces = as_array(pieces_obj, "pieces");
  if (pieces.ndim() != 2 || pieces.shape(1) != 2 || !bind::has_dtype<std::int64_t>(pieces.dtype()))
    throw ShapeError("pieces: expected an int64 array of shape [P, 2] (start, end), got " + describe(pieces));
  pieces = bind::c_contiguous(pieces, "pieces");
  const py::ssize_t t = x.shape(0), f = x.shape(1);
  const auto* xs = static_cast<const double*>(x.data());
  const auto* ps = static_cast<const std::int64_t*>(pieces.data());
  validate_fan_args(t, window, top_k, ps, pieces.shape(0));
  for (py::ssize_t i = 0; i < t * f; ++i)
    if (!std::isfinite(xs[i]))
      throw InvalidArgument("x: expected finite values, got " + std::to_string(xs[i]) + " at row " +
                            std::to_string(i / f) + ", column " + std::to_string(i % f));
  py::array_t<double> out({t, f});
  double* o = out.mutable_data();
  std::fill(o, o + t * f, 0.0);
  {
    py::gil_scoped_release release;
    fan_residuals_cpu(xs, t, f, ps, pieces.shape(0), window, top_k, o);
  }
  return out;
}

void register_exceptions() {
  // The Python classes live in himari.errors (they need multiple bases: ValueError and
  // HimariError). Most specific first: ShapeError and DeviceError derive from InvalidArgument.
  py::module_ errors = py::module_::import("himari.errors");
  static py::object invalid = errors.attr("InvalidArgumentError");
  static py::object shape = errors.attr("ShapeError");
  static py::object device = errors.attr("DeviceError");
  static py::object cuda_error = errors.attr("CudaError");
  static py::object cuda_unavailable = errors.attr("CudaUnavailableError");
  static py::object base = errors.attr("HimariError");
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const ShapeError& e) {
      PyErr_SetString(shape.ptr(), e.what());
    } catch (const DeviceError& e) {
      PyErr_SetString(device.ptr(), e.what());
    } catch (const InvalidArgument& e) {
      PyErr_SetString(invalid.ptr(), e.what());
    } catch (const CudaUnavailable& e) {
      PyErr_SetString(cuda_unavailable.ptr(), e.what());
    } catch (const CudaError& e) {
      PyErr_SetString(cuda_error.ptr(), e.what());
    } catch (const Error& e) {
      PyErr_SetString(base.ptr(), e.what());
    }
  });
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "himari native core (private: use himari.engine)";
  register_exceptions();

  m.def("cuda_compiled", &cuda_compiled);
  m.def("cuda_device_count", &cuda_device_count);
  m.def("cuda_unavailable_reason", &cuda::unavailable_reason,
        "Why no CUDA device can be used; empty when one is visible.");
  m.def("build_summary", &build_summary);
  m.def("require_device", [](const std::string& device) { require_device(parse_device(device)); },
        py::arg("device"));
  m.def("counter_hash", &counter_hash, py::arg("seed"), py::arg("stream"), py::arg("counter"));
  m.attr("ACCOUNT_COLUMNS") = kAccountColumns;
  m.attr("ACCOUNT_FIELDS") = py::cast(std::vector<std::string>(kAccountFieldNames, kAccountFieldNames + kAccountFields));
  m.attr("TERM_FIELDS") = py::cast(std::vector<std::string>(kTermFieldNames, kTermFieldNames + kTermFields));
  // The dtypes actions and signals may have (native byte order), from HIMARI_FOR_EACH_ACTION_TYPE.
  m.attr("ACTION_DTYPES") = py::tuple(py::cast(bind::action_dtype_names()));

  py::class_<RewardConfig>(m, "RewardConfig")
      .def(py::init<>())
      .def_readwrite("drawdown_penalty", &RewardConfig::drawdown_penalty)
      .def_readwrite("turnover_penalty", &RewardConfig::turnover_penalty)
      .def_readwrite("dsr_weight", &RewardConfig::dsr_weight)
      .def_readwrite("dsr_decay", &RewardConfig::dsr_decay);

  py::class_<EkfParams>(m, "EkfParams")
      .def(py::init<>())
      .def_readwrite("q_level", &EkfParams::q_level)
      .def_readwrite("q_velocity", &EkfParams::q_velocity)
      .def_readwrite("q_acceleration", &EkfParams::q_acceleration)
      .def_readwrite("q_log_variance", &EkfParams::q_log_variance)
      .def_readwrite("r_level", &EkfParams::r_level)
      .def_readwrite("r_log_square", &EkfParams::r_log_square)
      .def_readwrite("square_floor", &EkfParams::square_floor)
      .def_readwrite("phi", &EkfParams::phi)
      .def_readwrite("mu", &EkfParams::mu)
      .def_readwrite("p0_level", &EkfParams::p0_level)
      .def_readwrite("p0_velocity", &EkfParams::p0_velocity)
      .def_readwrite("p0_acceleration", &EkfParams::p0_acceleration)
      .def_readwrite("p0_log_variance", &EkfParams::p0_log_variance)
      .def_readwrite("use_volatility_obs", &EkfParams::use_volatility_obs);

  py::class_<PyMarket>(m, "Market")
      .def(py::init([](const py::handle& open, const py::handle& close, const py::handle& features) {
             return PyMarket{make_market(open, close, features)};
           }),
           py::arg("open"), py::arg("close"), py::arg("features") = py::none())
      .def_property_readonly("n_bars", [](const PyMarket& s) { return s.data->n_bars; })
      .def_property_readonly("n_features", [](const PyMarket& s) { return s.data->n_features; })
      .def_property_readonly("open", [](py::object self) {
        auto& d = *self.cast<PyMarket&>().data;
        return bind::view(d.open.data(), {d.n_bars}, self);
      })
      .def_property_readonly("close", [](py::object self) {
        auto& d = *self.cast<PyMarket&>().data;
        return bind::view(d.close.data(), {d.n_bars}, self);
      })
      .def_property_readonly("features", [](py::object self) {
        auto& d = *self.cast<PyMarket&>().data;
        return bind::view(d.features.data(), {d.n_bars, d.n_features}, self);
      });

  py::class_<TradingEnv>(m, "TradingEnv")
      .def(py::init([](const PyMarket& market, std::int64_t num_envs, std::int64_t episode_length,
                       std::int64_t window, std::int64_t warmup, std::uint64_t seed, bool random_start, double fee,
                       double slippage, const std::string& mode, const RewardConfig& reward, bool final_obs) {
             const EnvConfig cfg = bind::make_env_config(num_envs, episode_length, window, warmup, seed, random_start,
                                                         fee, slippage, mode, final_obs);
             return std::make_unique<TradingEnv>(market.data, cfg, reward);
           }),
           py::arg("market"), py::arg("num_envs"), py::arg("episode_length"), py::arg("window"), py::arg("warmup"),
           py::arg("seed"), py::arg("random_start"), py::arg("fee"), py::arg("slippage"), py::arg("mode"),
           py::arg("reward"), py::arg("final_obs") = true)
      .def("reset", &TradingEnv::reset, py::arg("reseed"), py::arg("seed"),
           py::call_guard<py::gil_scoped_release>())
      .def("step", &env_step, py::arg("actions"))
      .def_property_readonly("seed", [](const TradingEnv& e) { return e.config().seed; })
      .def_property_readonly("obs", [](py::object self) {
        auto& e = self.cast<TradingEnv&>();
        return bind::view(e.obs.data(), {e.num_envs(), e.config().window, e.obs_row()}, self);
      })
      .def_property_readonly("final_obs", [](py::object self) -> py::object {
        auto& e = self.cast<TradingEnv&>();
        if (e.final_obs.empty()) return py::none();
        return bind::view(e.final_obs.data(), {e.num_envs(), e.config().window, e.obs_row()}, self);
      })
      .def_property_readonly("reward", [](py::object self) {
        auto& e = self.cast<TradingEnv&>();
        return bind::view(e.reward.data(), {e.num_envs()}, self);
      })
      .def_property_readonly("terminated", [](py::object self) {
        return bool_view(self.cast<TradingEnv&>().terminated, self);
      })
      .def_property_readonly("truncated", [](py::object self) {
        return bool_view(self.cast<TradingEnv&>().truncated, self);
      })
      .def_property_readonly("episode_done", [](py::object self) {
        return bool_view(self.cast<TradingEnv&>().episode_done, self);
      })
      .def("account_field", [](py::object self, const std::string& name) {
        auto& e = self.cast<TradingEnv&>();
        for (int f = 0; f < kAccountFields; ++f)
          if (name == kAccountFieldNames[f]) return bind::view(e.account_field(f).data(), {e.num_envs()}, self);
        throw InvalidArgument("account field: unknown name '" + name + "'");
      }, py::arg("name"))
      .def("term_field", [](py::object self, const std::string& name) {
        auto& e = self.cast<TradingEnv&>();
        for (int f = 0; f < kTermFields; ++f)
          if (name == kTermFieldNames[f]) return bind::view(e.term_field(f).data(), {e.num_envs()}, self);
        throw InvalidArgument("reward term: unknown name '" + name + "'");
      }, py::arg("name"))
      .def_property_readonly("bar", [](py::object self) {
        auto& e = self.cast<TradingEnv&>();
        return bind::view(e.bar.data(), {e.num_envs()}, self);
      })
      .def_property_readonly("episode_return", [](py::object self) {
        auto& e = self.cast<TradingEnv&>();
        return bind::view(e.episode_return.data(), {e.num_envs()}, self);
      })
      .def_property_readonly("episode_length", [](py::object self) {
        auto& e = self.cast<TradingEnv&>();
        return bind::view(e.episode_length.data(), {e.num_envs()}, self);
      })
      .def_property_readonly("episode_index", [](py::object self) {
        auto& e = self.cast<TradingEnv&>();
        return bind::view(e.episode_index.data(), {e.num_envs()}, self);
      });

  m.def("backtest_signals", &backtest, py::arg("open"), py::arg("close"), py::arg("signals"), py::arg("fee"),
        py::arg("slippage"), py::arg("mode"), py::arg("bars_per_year"), py::arg("return_equity"),
        py::arg("device") = "cpu", py::arg("threads") = 1);
  m.def("backtest_signals_held_runs", &backtest_held_runs, py::arg("open"), py::arg("close"), py::arg("signals"),
        py::arg("fee"), py::arg("slippage"), py::arg("mode"), py::arg("bars_per_year"), py::arg("threads") = 1);
  m.def("hardware_threads", &hardware_threads);
  m.def(
      "backtest_plan",
      [](std::int64_t n_bars, std::int64_t n_strategies, bool with_equity, int threads) {
        const BacktestPlan p = plan_backtest_threads(n_bars, n_strategies, with_equity, threads);
        const char* split = p.split == BacktestSplit::kStrategies ? "strategies"
                            : p.split == BacktestSplit::kTimeScan ? "time_scan"
                                                                   : "sequential";
        return py::make_tuple(split, p.workers);
      },
      py::arg("n_bars"), py::arg("n_strategies"), py::arg("with_equity"), py::arg("threads"));
  m.def("replay_actions", &replay, py::arg("open"), py::arg("close"), py::arg("actions"), py::arg("fee"),
        py::arg("slippage"), py::arg("mode"), py::arg("reward"));
  m.def("ekf", &run_ekf, py::arg("prices"), py::arg("params"), py::arg("return_innovations"),
        py::arg("device") = "cpu");
  m.def("fan_residuals", &run_fan, py::arg("x"), py::arg("pieces"), py::arg("window"), py::arg("top_k"));
  m.attr("METRIC_NAMES") = py::make_tuple("total_return", "annual_return", "sharpe", "sortino", "max_drawdown",
                                          "calmar", "turnover", "n_trades", "win_rate", "exposure");
  // After the host classes, so the CUDA signatures name Market, RewardConfig and EkfParams.
  bind::register_cuda(m);
}
