# moesys infer and the "inference" experiment kind: good runs, and every kind of bad input (exit 2, one line with
# the numbers, nothing left behind).
set(studies @SRC@/tests/data/inference)

moesys_cli_test(infer_default 0 "" infer --output 4)
moesys_cli_test(infer_json_deepspeed_pinned 0 "" infer --policy deepspeed --host-memory pinned --output 4 --json)
moesys_cli_test(infer_trace 0 "" infer --model gpt-moe-8e --ring-slots 3 --output 3 --trace @WORK@/trace.json)
moesys_cli_test(infer_16_gpus_flat 0 "" infer --nodes 2 --gpu a100-40g --model gpt-moe-32e --policy all-in-gpu
                --all-to-all flat --batch 8 --output 4)
moesys_cli_test(experiment_inference_tiny 0 "" experiment ${studies}/study-tiny.json --results @WORK@/results)

# The four cases of the issue: K above the layers, zero slots, a layer that cannot fit, a KV cache that cannot fit.
moesys_cli_test(infer_slots_above_layers 2 "--ring-slots: K = 13 ring slots is more than the model's 12 MoE layers"
                infer --ring-slots 13)
moesys_cli_test(infer_zero_slots 2 "--ring-slots: expected at least 1 ring slot, got 0" infer --ring-slots 0)
moesys_cli_test(infer_layer_does_not_fit 2 "a single MoE layer does not fit: its 192 experts need a 48.01 GiB slot"
                infer --model gpt-moe-192e)
moesys_cli_test(infer_deepspeed_layer_does_not_fit 2 "deepspeed: a single decoder layer does not fit"
                infer --model gpt-moe-192e --policy deepspeed)
moesys_cli_test(infer_kv_cache_does_not_fit 2 "its KV cache needs 288.00 GiB"
                infer --batch 2048 --prompt 512 --output 256)
moesys_cli_test(study_slots_above_layers 2 "runs[0].ring_slots: K = 13 ring slots is more than the model's 12"
                experiment ${studies}/study-k-too-large.json --results @WORK@/results)
moesys_cli_test(study_zero_slots 2 "defaults.ring_slots: expected at least 1 ring slot, got 0"
                experiment ${studies}/study-zero-slots.json --results @WORK@/results)
moesys_cli_test(study_layer_does_not_fit 2 "a single MoE layer does not fit"
                experiment ${studies}/study-layer-does-not-fit.json --results @WORK@/results)
moesys_cli_test(study_kv_cache_does_not_fit 2 "KV cache needs 192.00 GiB"
                experiment ${studies}/study-kv-does-not-fit.json --results @WORK@/results)

# Other bad input.
moesys_cli_test(infer_slots_beyond_hbm 2 "at most K = 4 slots fit" infer --model gpt-moe-32e --ring-slots 12)
moesys_cli_test(infer_model_does_not_fit_in_gpu 2 "all-in-gpu: the weights of gpt-moe-16e need 49.90 GiB"
                infer --policy all-in-gpu)
moesys_cli_test(infer_unknown_policy 2 "unknown policy \"zero\" (known: all-in-gpu, deepspeed, moesys)"
                infer --policy zero)
moesys_cli_test(infer_unknown_model 2 "unknown model \"gpt-moe\" and no such file (models: deepseek-v3, gpt-moe-<E>e" infer --model gpt-moe)
moesys_cli_test(infer_gpus_do_not_divide_experts 2 "3 GPUs do not divide the model's 16 experts"
                infer --nodes 1 --gpu a100-40g --gpus 3)
moesys_cli_test(infer_context_too_long 2 "1100 tokens exceeds the model's 1024 learned positions"
                infer --prompt 1000 --output 100)
moesys_cli_test(infer_ring_from_pageable 2 "--host-memory: the moesys ring copies from pinned host memory"
                infer --host-memory pageable)
moesys_cli_test(infer_bad_all_to_all 2 "--all-to-all: expected \"flat\", \"hierarchical\" or \"deepep\", got \"ring\"" infer --all-to-all ring)
moesys_cli_test(study_unknown_key 2 "runs[0].slots: unknown key"
                experiment ${studies}/study-unknown-key.json --results @WORK@/results)
moesys_cli_test(study_unknown_policy 2 "runs[0].policy: unknown policy \"zero-infinity\""
                experiment ${studies}/study-unknown-policy.json --results @WORK@/results)

# Where it runs: bad --runtime / --ranks combinations are refused before anything is launched.
moesys_cli_test(infer_unknown_runtime 2 "--runtime: expected sim, cpu or cuda, got \"tpu\"" infer --runtime tpu)
moesys_cli_test(infer_ranks_without_real_runtime 2 "--ranks: applies to --runtime cpu or cuda" infer --ranks 2)
moesys_cli_test(infer_gpus_with_real_runtime 2 "--gpus: applies to the simulator (real runs take --ranks)"
                infer --runtime cpu --gpus 2)
moesys_cli_test(infer_real_needs_fp32 2 "--model: the real runtimes compute the MoE kernels in fp32"
                infer --runtime cpu --ranks 1 --model "{\"name\": \"x\", \"layers\": 1, \"hidden\": 64, \"heads\": 2, \"vocab\": 64, \"seq_len\": 16, \"experts\": 2, \"top_k\": 1, \"dtype\": \"fp16\"}")
moesys_cli_test(infer_real_ranks_out_of_range 2 "--ranks: expected 1..64 ranks" infer --runtime cpu --ranks 0)
moesys_cli_test(infer_real_trace 2 "--trace: applies to the simulator" infer --runtime cpu --trace @WORK@/t.json)
# Expert replicas while generating: all-in-GPU weights only, and the training policy's replicas object.
moesys_cli_test(infer_replicas 0 "tokens/s"
                infer --policy all-in-gpu --model gpt-moe-8e --output 4 --nodes 1 --gpus-per-node 2 --nics-per-node 2
                --gpu a100-80g --workload "{\"kind\": \"zipf\", \"exponent\": 1.2}"
                --replicas "{\"kind\": \"eplb\", \"slots\": 1}")
moesys_cli_test(infer_replicas_offloaded 2 "expert replicas with offloaded experts are not modelled"
                infer --replicas "{\"kind\": \"eplb\"}")
moesys_cli_test(infer_replicas_unknown_key 2 "--replicas.slot: unknown key (valid keys: every, kind, scope, slots)"
                infer --policy all-in-gpu --replicas "{\"kind\": \"eplb\", \"slot\": 1}")
moesys_cli_test(infer_deepep_two_nodes 0 "deepep all-to-all" infer --nodes 2 --gpu a100-40g --model gpt-moe-32e --policy all-in-gpu --batch 4 --output 4 --all-to-all deepep)
