#!/usr/bin/env bash
# The final evaluations of the models' default recipes (docs/model-cards.md), by hand, not a
# test: each model with no options (its recipe), 4 expanding walk-forward folds x 5 seeds on the
# shared BTC and ETH 2023 bars, fee 0.1% + slippage 0.05%, the searches' every configuration
# counted as a trial in the deflated Sharpe, then one HTML report of them all.
#
#   bash benchmarks/recipe_final.sh DATA_DIR OUT_DIR [baseline-mlp|cql|ppo-lstm|cgdt|flag-trader ...]
#
# Run benchmarks/recipe_search.sh DATA_DIR OUT_DIR first (the same OUT_DIR): it prepares the data
# and leaves the search directories this script counts. Where a model's search directories are not
# in OUT_DIR, its search's summary in benchmarks/results/recipes/search-MODEL.json (a trials file)
# counts the same trials. flag-trader's recipe was not searched (one configuration): its final
# evaluation counts itself alone.
set -euo pipefail
data=${1:?DATA_DIR}
out=${2:?OUT_DIR}
shift 2
models=${*:-baseline-mlp cql ppo-lstm}
declare -A prefix=([baseline-mlp]=search-mlp [cql]=search-cql [ppo-lstm]=search-ppo [cgdt]=search-cgdt [flag-trader]=search-flag)
unsearched=(flag-trader)  # its recipe was not searched: the final evaluation is its only trial
summaries=$(cd "$(dirname "$0")" && pwd)/results/recipes

for model in $models; do
  prior=()
  for d in "$out/${prefix[$model]}"*; do [ -d "$d" ] && prior+=(--prior-trials "$d"); done
  if [ ${#prior[@]} -eq 0 ] && [ -f "$summaries/search-$model.json" ]; then
    prior=(--prior-trials "$summaries/search-$model.json")
  elif [ ${#prior[@]} -eq 0 ] && [[ " ${unsearched[*]} " != *" $model "* ]]; then
    echo "no search of $model in $out nor $summaries/search-$model.json" >&2; exit 2
  fi
  for m in btc eth; do
    [ -d "$out/$m" ] || himari data prepare "$data/${m}usdt_5m.csv.gz" --out "$out/$m" > /dev/null
    himari evaluate "$model" --data "$out/$m" --walk-forward 4 --seeds 5 --fee 0.001 --slippage 0.0005 \
      "${prior[@]}" --out "$out/final-$model-$m"
  done
done
himari report "$out"/final-*-btc "$out"/final-*-eth --out "$out/recipes-report.html" \
  --title "Default recipes, walk-forward on BTC and ETH 2023"
python "$(dirname "$0")/summarise_evaluations.py" $(for d in "$out"/final-*; do echo "$(basename "$d")=$d"; done) \
  --out "$out/final.json"
