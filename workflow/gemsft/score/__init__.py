"""Reward scoring (rules/score.smk): the Bradley-Terry reward model, best-of-N and the win rate."""

#: the chat stage's metric for the reward model's held-out pair accuracy (%); here, where importing it
#: loads no torch, so the report (gemsft.report.reward_accuracy) reads the same name
REWARD_MODEL_ACCURACY = "reward_model_accuracy"
