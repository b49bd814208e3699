"""Core functionality of the Nanograph SDK"""
