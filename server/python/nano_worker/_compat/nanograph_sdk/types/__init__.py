"""Type definitions for the Nanograph SDK"""
