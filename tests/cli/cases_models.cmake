# The model zoo on the command line: models by name, and the refusals of unknown names and of parts the program
# does not run yet.
moesys_cli_test(train_unknown_zoo_model 2 "unknown model \"mixtral-8x8b\" and no such file (models: deepseek-v3"
                train --model mixtral-8x8b)
moesys_cli_test(train_config_unknown_model 2 "model.preset: unknown model \"llama\" (known: gpt-moe with \"experts\""
                train --config @SRC@/tests/data/bad-input/train-unknown-model.json)
moesys_cli_test(train_real_fp8_refused 2 "model.fp8_gemm: FP8 is a simulator option; the real runtimes compute in fp32"
                train --runtime cpu --ranks 1 --model "{\"fp8_gemm\": true}")
moesys_cli_test(infer_real_fp8_refused 2 "--model: FP8 is a simulator option"
                infer --runtime cpu --ranks 1 --model "{\"name\": \"x\", \"layers\": 1, \"hidden\": 64, \"heads\": 2, \"vocab\": 64, \"seq_len\": 16, \"experts\": 2, \"top_k\": 1, \"dtype\": \"fp32\", \"fp8_gemm\": true}")
# Generation serves the main model: DeepSeek-V3's MTP module is left out (671.0B parameters, not 682.6B).
moesys_cli_test(infer_deepseek_serves_main_model 0 ""
                infer --model deepseek-v3 --nodes 8 --gpus-per-node 8 --nics-per-node 8 --nic-gbps 400 --gpu h100
                --gpus 64 --policy all-in-gpu --batch 4 --prompt 32 --output 2)
# Multi-token prediction modules: the policies and models they do not run with, and a bad loss weight.
set(mtp_model "{\"preset\": \"deepseek-v3\", \"layers\": 4, \"seq_len\": 1024, \"global_batch\": 64}")
moesys_cli_test(train_mtp_zero3 2 "1 multi-token prediction module(s) with dense zero3 are not modelled"
                train --model ${mtp_model} --gpus 16 --gpu h100 --preset moesys)
moesys_cli_test(train_mtp_offload 2 "1 multi-token prediction module(s) with offloaded experts are not modelled"
                train --model ${mtp_model} --gpus 16 --gpu h100 --preset megatron --policy "{\"offload\": \"cpu\"}")
moesys_cli_test(train_mtp_partition 2 "1 multi-token prediction module(s) with the embedding partition are not modelled"
                train --model "{\"mtp_layers\": 1}" --policy "{\"dense\": \"ddp\", \"embedding\": \"partition\"}")
moesys_cli_test(train_mtp_learned_positions 2 "embed the next tokens without positions, as with rotary positions"
                train --model "{\"mtp_layers\": 1}" --preset deepspeed)
moesys_cli_test(train_mtp_loss_weight 2 "model.mtp_loss_weight: expected a number in [0, 1000]"
                train --model "{\"preset\": \"deepseek-v3\", \"mtp_loss_weight\": -1}")
moesys_cli_test(train_deepseek_mtp_runs 0 "tokens/s"
                train --model ${mtp_model} --gpus 16 --gpu h100 --preset megatron --steps 1)
# A named model with overrides replaces the default model (no stray "experts" from the paper's family).
moesys_cli_test(train_zoo_model_with_overrides 0 ""
                train --model "{\"preset\": \"qwen3-30b-a3b\", \"layers\": 2, \"global_batch\": 8, \"seq_len\": 256}" --gpus 8 --gpu h100 --steps 1)
moesys_cli_test(train_partition_needs_tied_table 2 "the embedding partition shards a table tied to the output layer"
                train --model qwen3-30b-a3b --policy "{\"embedding\": \"partition\"}" --gpus 8 --gpu h100)
