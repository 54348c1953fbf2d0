// Bindings of the CUDA backend: DeviceMarket, CudaTradingEnv, and the CUDA paths of the
// backtester and the EKF. Validation and conversion only; the work is in cpp/src.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <memory>
#include <string>

#include "array_interop.h"
#include "device_arrays.h"
#include "himari/backtest/backtest.h"
#include "himari/backtest/held_runs.h"
#include "himari/cuda/bad_index.h"
#include "himari/env/cuda_trading_env.h"
#include "himari/filters/ekf.h"
#include "shared.h"

namespace himari::bind {

namespace {

struct PyDeviceMarket {
  std::shared_ptr<const DeviceMarket> data;
};

// The DType of a host array: its action dtype, else float32/float64, else kOther.
DType host_dtype(const py::array& a) {
  const DType action = action_dtype(a);
  if (action != kOther) return action;
  if (bind::has_dtype<float>(a.dtype())) return kFloat32;
  if (bind::has_dtype<double>(a.dtype())) return kFloat64;
  return kOther;
}

// An input on `device`: a device array is viewed in place; a host array is copied into `staging`.
DeviceView input_on_device(const py::handle& obj, const char* name, int device, cuda::Stream stream,
                           std::shared_ptr<void>& staging) {
  if (is_device_array(obj)) return device_view(obj, name, device, stream);
  py::array a = as_array(obj, name);
  a = c_contiguous(a, name);
  DeviceView v;
  v.dtype = host_dtype(a);
  if (v.dtype == kOther) throw ShapeError(std::string(name) + ": unsupported dtype, got " + describe(a));
  for (py::ssize_t k = 0; k < a.ndim(); ++k) v.shape.push_back(a.shape(k));
  v.device = device;
  const auto bytes = static_cast<std::size_t>(a.nbytes());
  staging = cuda::allocate(bytes, device);
  if (bytes > 0) cuda::copy_to_device(staging.get(), a.data(), bytes, device, stream);
  v.data = staging.get();
  return v;
}

void env_step(CudaTradingEnv& env, const py::handle& actions, std::uintptr_t stream) {
  const DeviceView v = device_view(actions, "actions", env.device(), stream);
  if (v.shape.size() != 1 || v.shape[0] != env.num_envs() || !is_action(v.dtype))
    throw ShapeError("actions: expected an integer array of shape (" + std::to_string(env.num_envs()) +
                     ",) on cuda:" + std::to_string(env.device()) + " (" + action_dtypes_text() + "), got " +
                     v.describe());
  with_action_type(v.dtype, v.data, [&](auto* p) { env.step(p, stream); });
}

py::dict env_buffers(py::object self) {
  auto& e = self.cast<CudaTradingEnv&>();
  const int dev = e.device();
  const std::int64_t n = e.num_envs();
  auto arr = [&](void* p, DType d, std::vector<std::int64_t> shape) {
    return make_device_array(p, d, std::move(shape), dev, nullptr, self);
  };
  py::dict out;
  out["obs"] = arr(e.obs(), kFloat32, {n, e.config().window, e.obs_row()});
  if (e.final_obs() != nullptr) out["final_obs"] = arr(e.final_obs(), kFloat32, {n, e.config().window, e.obs_row()});
  out["reward"] = arr(e.reward(), kFloat32, {n});
  out["terminated"] = arr(e.flag(0), kBool, {n});
  out["truncated"] = arr(e.flag(1), kBool, {n});
  out["episode_done"] = arr(e.flag(2), kBool, {n});
  out["bar"] = arr(e.bar(), kInt64, {n});
  out["episode_return"] = arr(e.episode_return(), kFloat64, {n});
  out["episode_length"] = arr(e.episode_length(), kInt64, {n});
  out["episode_index"] = arr(e.episode_index(), kInt64, {n});
  for (int f = 0; f < kAccountFields; ++f)
    out[py::str(std::string("account.") + kAccountFieldNames[f])] = arr(e.account_field(f), kFloat64, {n});
  for (int f = 0; f < kTermFields; ++f)
    out[py::str(std::string("term.") + kTermFieldNames[f])] = arr(e.term_field(f), kFloat64, {n});
  return out;
}

py::tuple backtest_cuda(const py::handle& open, const py::handle& close, const py::handle& signals, double fee,
                        double slippage, const std::string& mode, double bars_per_year, bool return_equity, int device,
                        std::uintptr_t stream, const std::string& kernel, std::int64_t chunk, bool tiles) {
  cuda::require(device);
  HIMARI_CHECK(kernel == "auto" || kernel == "scan" || kernel == "sequential" || kernel == "held_runs",
               "kernel: expected 'auto', 'scan', 'sequential' or 'held_runs', got '", kernel, "'");
  HIMARI_CHECK(chunk >= 0, "chunk: expected a number of bars >= 0 (0 sizes chunks automatically), got ", chunk);
  const bool held_runs = kernel == "held_runs";
  HIMARI_CHECK(!held_runs || mode == "long_flat", "kernel: 'held_runs' backtests long_flat signals only, got mode=",
               mode);
  const bool scan = kernel == "scan" || held_runs || (kernel == "auto" && chunk > 0);
  HIMARI_CHECK(!(scan && return_equity),
               "kernel: the scan kernel computes metrics only; use 'auto' or 'sequential' with return_equity");
  HIMARI_CHECK(!(kernel == "sequential" && chunk > 0), "chunk: only the scan kernel works in chunks");
  HIMARI_CHECK(std::isfinite(bars_per_year) && bars_per_year > 0.0,
               "bars_per_year: expected a finite value > 0, got ", bars_per_year);
  const std::vector<double> o = read_prices(open, "open");
  const std::vector<double> c = read_prices(close, "close");
  HIMARI_CHECK(c.size() == o.size(), "close: expected the length of open (", o.size(), "), got ", c.size());
  const auto t_bars = static_cast<std::int64_t>(o.size());
  HIMARI_CHECK(t_bars >= 2, "open: expected at least 2 bars, got ", t_bars);
  std::shared_ptr<void> staging;
  const DeviceView s = input_on_device(signals, "signals", device, stream, staging);
  if (s.shape.size() != 2 || s.shape[0] != t_bars || s.shape[1] < 1 || !is_action(s.dtype))
    throw ShapeError("signals: expected an integer array of shape [T, M] with T = " + std::to_string(t_bars) +
                     " (len(close)) and M >= 1 (" + action_dtypes_text() + "), got " + s.describe());
  const std::int64_t m = s.shape[1];
  std::shared_ptr<void> prices = cuda::allocate(2 * o.size() * sizeof(double), device);
  auto* dev_open = static_cast<double*>(prices.get());
  cuda::copy_to_device(dev_open, o.data(), o.size() * sizeof(double), device, stream);
  cuda::copy_to_device(dev_open + o.size(), c.data(), c.size() * sizeof(double), device, stream);
  BacktestInputs in;
  in.open = dev_open;
  in.close = dev_open + o.size();
  in.n_bars = t_bars;
  in.n_strategies = m;
  in.costs = make_costs(fee, slippage, mode);
  in.bars_per_year = bars_per_year;
  const std::size_t metric_doubles = sizeof(Metrics) / sizeof(double);
  std::shared_ptr<void> metrics = cuda::allocate(static_cast<std::size_t>(m) * sizeof(Metrics), device);
  std::shared_ptr<void> equity;
  if (return_equity) equity = cuda::allocate(static_cast<std::size_t>(t_bars * m) * sizeof(double), device);
  // held runs: the shared tables (held_runs.h) built here and copied next to the prices
  std::unique_ptr<runs::MarketTables> tables;
  std::shared_ptr<void> table_memory;
  runs::TablesView device_tables;
  if (held_runs) {
    tables = std::make_unique<runs::MarketTables>(c.data(), t_bars);
    const std::size_t sums = tables->sums_bytes(), tree = tables->tree_bytes();
    table_memory = cuda::allocate(sums + tree, device);
    auto* base = static_cast<char*>(table_memory.get());
    cuda::copy_to_device(base, tables->view().sums, sums, device, stream);
    cuda::copy_to_device(base + sums, tables->view().tree, tree, device, stream);
    device_tables = tables->view();
    device_tables.sums = reinterpret_cast<const double*>(base);
    device_tables.tree = reinterpret_cast<const runs::RangeSummary*>(base + sums);
    device_tables.close = in.close;
  }
  cuda::BadIndex bad_signal(device, stream);
  with_action_type(s.dtype, s.data, [&](auto* p) {
    auto* met = static_cast<Metrics*>(metrics.get());
    if (kernel == "sequential")
      cuda::backtest_signals_sequential(in, p, met, static_cast<double*>(equity.get()), bad_signal.get(), device,
                                        stream);
    else if (scan)
      cuda::backtest_signals_scan(in, p, met, bad_signal.get(), chunk, device, stream,
                                  held_runs ? &device_tables : nullptr, tiles);
    else
      cuda::backtest_signals(in, p, met, static_cast<double*>(equity.get()), bad_signal.get(), device, stream);
  });
  if (const auto first = bad_signal.take(stream))
    throw InvalidArgument("signals: expected values in {0, 1, 2} (SELL, HOLD, BUY), got another value at [" +
                          std::to_string(*first / static_cast<unsigned long long>(m)) + ", " +
                          std::to_string(*first % static_cast<unsigned long long>(m)) + "]");
  py::array_t<double> host({static_cast<py::ssize_t>(m), static_cast<py::ssize_t>(metric_doubles)});
  cuda::copy_to_host(host.mutable_data(), metrics.get(), static_cast<std::size_t>(m) * sizeof(Metrics), device, stream);
  py::object eq = py::none();
  if (return_equity) eq = make_device_array(equity.get(), kFloat64, {t_bars, m}, device, equity, py::none());
  return py::make_tuple(host, eq);
}

py::tuple ekf_cuda(const py::handle& prices_obj, const EkfParams& params, bool return_innovations, int device,
                   std::uintptr_t stream) {
  cuda::require(device);
  validate_ekf_params(params);
  std::shared_ptr<void> staging;
  const DeviceView p = input_on_device(prices_obj, "prices", device, stream, staging);
  if (p.shape.size() != 2 || (p.dtype != kFloat32 && p.dtype != kFloat64) || p.shape[1] < 1)
    throw ShapeError("prices: expected a float32 or float64 array of shape [B, T] with T >= 1, got " + p.describe());
  const std::int64_t b = p.shape[0], t = p.shape[1];
  std::shared_ptr<void> states = cuda::allocate(static_cast<std::size_t>(b * t * 4) * sizeof(double), device);
  std::shared_ptr<void> innov;
  if (return_innovations) innov = cuda::allocate(static_cast<std::size_t>(b * t * 2) * sizeof(double), device);
  cuda::BadIndex bad_price(device, stream);
  auto* st = static_cast<double*>(states.get());
  auto* in = static_cast<double*>(innov.get());
  auto* err = bad_price.get();
  if (b > 0) {
    if (p.dtype == kFloat64)
      cuda::ekf(static_cast<const double*>(p.data), b, t, params, st, in, err, device, stream);
    else
      cuda::ekf(static_cast<const float*>(p.data), b, t, params, st, in, err, device, stream);
  }
  if (const auto first = bad_price.take(stream))
    throw InvalidArgument("prices: expected finite prices > 0, got another value at series " +
                          std::to_string(*first / static_cast<unsigned long long>(t)) + ", bar " +
                          std::to_string(*first % static_cast<unsigned long long>(t)));
  py::object states_arr = make_device_array(st, kFloat64, {b, t, 4}, device, states, py::none());
  py::object innov_arr = py::none();
  if (return_innovations) innov_arr = make_device_array(in, kFloat64, {b, t, 2}, device, innov, py::none());
  return py::make_tuple(states_arr, innov_arr);
}

}  // namespace

void register_cuda(py::module_& m) {
  register_device_array(m);
  m.def("cuda_pointer_device", [](std::uintptr_t ptr) { return cuda::pointer_device(reinterpret_cast<void*>(ptr)); },
        py::arg("ptr"));
  m.def("cuda_synchronize", [](int device, std::uintptr_t stream) {
    py::gil_scoped_release release;
    cuda::synchronize(device, stream);
  }, py::arg("device"), py::arg("stream") = 0);

  py::class_<PyDeviceMarket>(m, "DeviceMarket")
      .def(py::init([](const PyMarket& market, int device) {
             py::gil_scoped_release release;
             return PyDeviceMarket{upload_market(market.data, device)};
           }),
           py::arg("market"), py::arg("device"))
      .def_property_readonly("device", [](const PyDeviceMarket& d) { return d.data->device; });

  py::class_<CudaTradingEnv>(m, "CudaTradingEnv")
      .def(py::init([](const PyDeviceMarket& market, std::int64_t num_envs, std::int64_t episode_length,
                       std::int64_t window, std::int64_t warmup, std::uint64_t seed, bool random_start, double fee,
                       double slippage, const std::string& mode, const RewardConfig& reward, bool final_obs, std::uintptr_t stream) {
             const EnvConfig cfg = bind::make_env_config(num_envs, episode_length, window, warmup, seed, random_start,
                                                         fee, slippage, mode, final_obs);
             return std::make_unique<CudaTradingEnv>(market.data, cfg, reward, stream);
           }),
           py::arg("market"), py::arg("num_envs"), py::arg("episode_length"), py::arg("window"), py::arg("warmup"),
           py::arg("seed"), py::arg("random_start"), py::arg("fee"), py::arg("slippage"), py::arg("mode"),
           py::arg("reward"), py::arg("final_obs") = true, py::arg("stream") = 0)
      .def("reset", &CudaTradingEnv::reset, py::arg("reseed"), py::arg("seed"), py::arg("stream") = 0)
      .def("step", &env_step, py::arg("actions"), py::arg("stream") = 0)
      .def("check", &CudaTradingEnv::check, py::arg("stream") = 0, py::call_guard<py::gil_scoped_release>())
      .def_property_readonly("device", &CudaTradingEnv::device)
      .def_property_readonly("seed", [](const CudaTradingEnv& e) { return e.config().seed; })
      .def("buffers", &env_buffers);

  m.def("backtest_signals_cuda", &backtest_cuda, py::arg("open"), py::arg("close"), py::arg("signals"), py::arg("fee"),
        py::arg("slippage"), py::arg("mode"), py::arg("bars_per_year"), py::arg("return_equity"), py::arg("device"),
        py::arg("stream") = 0, py::arg("kernel") = "auto", py::arg("chunk") = 0, py::arg("tiles") = true);
  m.def("ekf_cuda", &ekf_cuda, py::arg("prices"), py::arg("params"), py::arg("return_innovations"), py::arg("device"),
        py::arg("stream") = 0);
}

}  // namespace himari::bind
