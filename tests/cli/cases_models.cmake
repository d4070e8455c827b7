# The model zoo on the command line: models by name, and the refusals of unknown names and of parts the program
# does not run yet.
moesys_cli_test(train_unknown_zoo_model 2 "unknown model \"mixtral-8x8b\" and no such file (models: deepseek-v3"
                train --model mixtral-8x8b)
moesys_cli_test(train_config_unknown_model 2 "model.preset: unknown model \"llama\" (known: gpt-moe with \"experts\""
                train --config @SRC@/tests/data/bad-input/train-unknown-model.json)
moesys_cli_test(train_deepseek_mla_not_run 2 "model.attention.kind: multi-head latent attention: not yet run by the training program"
                train --model deepseek-v3)
