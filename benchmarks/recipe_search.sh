#!/usr/bin/env bash
# The recipe searches behind the models' default recipes (docs/model-cards.md), by hand, not a
# test. Every search is `himari evaluate --hold-out-last`: 3 of 4 expanding walk-forward folds x
# 3 seeds on the shared BTC and ETH 2023 bars, fee 0.1% + slippage 0.05%, the last fold's test
# block (20 Oct to 30 Dec 2023) never trained, validated or scored. The final evaluations
# (benchmarks/recipe_final.sh) count every configuration tried here as a trial (--prior-trials).
#
#   bash benchmarks/recipe_search.sh DATA_DIR OUT_DIR [baseline-mlp|cql|ppo-lstm ...]
#
# DATA_DIR holds btcusdt_5m.csv.gz and ethusdt_5m.csv.gz (the shared data). On a 2-core machine:
# baseline-mlp about 10 minutes per market for its 28 configurations, cql about 8 minutes per
# market per round, ppo-lstm about 20-25 minutes per market per round, the small cgdt about 35
# minutes per market per round (one thread each, both markets side by side).
set -euo pipefail
data=${1:?DATA_DIR}
out=${2:?OUT_DIR}
shift 2
models=${*:-baseline-mlp cql ppo-lstm}
mkdir -p "$out"
common=(--walk-forward 4 --hold-out-last --seeds 3 --fee 0.001 --slippage 0.0005 --resamples 2000 --set recipe=none)

for m in btc eth; do
  [ -d "$out/$m" ] || himari data prepare "$data/${m}usdt_5m.csv.gz" --out "$out/$m" > /dev/null
  for model in $models; do
    case $model in
      baseline-mlp)
        # round 0: the prepared labels' horizon (5, 12, 48 or 288 bars), with and without choosing the
        # execution rules on validation
        for h in "5 0.002" "12 0.004" "48 0.006" "288 0.015"; do
          set -- $h
          [ -d "$out/$m-h$1" ] || himari data prepare "$data/${m}usdt_5m.csv.gz" --out "$out/$m-h$1" \
            --horizon "$1" --threshold "$2" > /dev/null
          himari evaluate baseline-mlp --data "$out/$m-h$1" "${common[@]}" --grid execution.select=false,true \
            --out "$out/search-mlp0-h$1-$m"
        done
        # round 1: the run's own risk-adjusted labels x fixed execution rules (16 configurations)
        himari evaluate baseline-mlp --data "$out/$m" "${common[@]}" --set labels.name=risk-adjusted \
          --grid labels.horizon=48,288 --grid execution.decision_interval=1,12 --grid execution.min_hold=0,288 \
          --grid execution.confidence=0.0,0.6 --out "$out/search-mlp1-$m"
        # round 2: around round 1's best (8 configurations)
        himari evaluate baseline-mlp --data "$out/$m" "${common[@]}" --set labels.name=risk-adjusted \
          --set execution.decision_interval=12 --grid labels.horizon=288,576 --grid execution.min_hold=288,576 \
          --grid execution.confidence=0.6,0.7 --out "$out/search-mlp2-$m"
        ;;
      cql)
        # round 1: behaviour actions from the prepared labels or the run's risk-adjusted ones x decision interval
        himari evaluate cql --data "$out/$m" "${common[@]}" --set execution.min_hold=0 \
          --grid labels='null,{name: risk-adjusted, horizon: 288, z: 0.5}' --grid execution.decision_interval=1,12 \
          --out "$out/search-cql1-$m"
        # round 2: seeded uniform behaviour actions and a weaker conservative term
        himari evaluate cql --data "$out/$m" "${common[@]}" --set execution.decision_interval=12 \
          --grid cql.behaviour=labels,random --grid cql.alpha=0.1,1.0 --out "$out/search-cql2-$m"
        # round 3: rewards in excess of holding the asset (being long in a rising market is no longer
        # high value by itself), deciding every bar or every hour
        himari evaluate cql --data "$out/$m" "${common[@]}" --set cql.benchmark_weight=1 \
          --grid execution.decision_interval=1,12 --out "$out/search-cql3-$m"
        ;;
      ppo-lstm)
        # round 1: observation and reward normalisation against the benchmark-relative reward
        himari evaluate ppo-lstm --data "$out/$m" "${common[@]}" \
          --grid methods='[vec-normalize],[reward-shaping]' --out "$out/search-ppo1-$m"
        # round 2: both, with the observations normalised only, and the benchmark subtracted in full
        # or by half (then neither a static long nor a static flat book is free reward)
        himari evaluate ppo-lstm --data "$out/$m" "${common[@]}" --set 'methods=[vec-normalize, reward-shaping]' \
          --set vec-normalize.norm_reward=false --grid reward-shaping.benchmark_weight=1.0,0.5 --out "$out/search-ppo2-$m"
        # round 3 (after the final evaluation): the recipe with hourly decisions and a one-day minimum
        # hold, the rules applied at evaluation only or in the training rollouts too
        himari evaluate ppo-lstm --data "$out/$m" "${common[@]}" --set 'methods=[vec-normalize]' \
          --set execution.decision_interval=12 --set execution.min_hold=288 --grid execution.in_rollouts=false,true \
          --out "$out/search-ppo3-$m"
        ;;
      cgdt)
        # a small CGDT for a 2-core CPU (64 wide, 2 blocks, 16-step windows, a 400-step critic, 3 epochs;
        # 4 to 5.5 minutes a run, against tens of minutes at the default size), and its hourly decisions
        # with the target return-to-go chosen on validation among lower quantiles of the train returns-to-go
        small=(--set cgdt.d_model=64 --set cgdt.n_layers=2 --set cgdt.n_heads=4 --set cgdt.context_length=16
               --set cgdt.critic_steps=400 --set train.epochs=3)
        hourly=(--set execution.decision_interval=12 --set 'cgdt.target_quantiles=[0.1, 0.25, 0.5, 0.75]')
        # round 0: the small CGDT as it is (the recipe: the highest mean Sharpe; no round qualified)
        himari evaluate cgdt --data "$out/$m" "${common[@]}" "${small[@]}" --out "$out/search-cgdt0-$m"
        # round 1: deciding hourly
        himari evaluate cgdt --data "$out/$m" "${common[@]}" "${small[@]}" "${hourly[@]}" --out "$out/search-cgdt1-$m"
        # round 2: round 1 holding every position a day or more (the lever that helped baseline-mlp most)
        himari evaluate cgdt --data "$out/$m" "${common[@]}" "${small[@]}" "${hourly[@]}" --set execution.min_hold=288 \
          --out "$out/search-cgdt2-$m"
        # round 3: round 1 with returns-to-go in excess of holding the asset (a high target no longer
        # asks for "stay long in a rising market")
        himari evaluate cgdt --data "$out/$m" "${common[@]}" "${small[@]}" "${hourly[@]}" --set cgdt.benchmark_weight=1 \
          --out "$out/search-cgdt3-$m"
        ;;
    esac
  done
done
python "$(dirname "$0")/summarise_search.py" $(for d in "$out"/search-*; do echo "$(basename "$d")=$d"; done) \
  --out "$out/search.json" --markdown
