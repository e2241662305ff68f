"""Reward scoring (rules/score.smk): the Bradley-Terry reward model, best-of-N and the win rate."""
