"""What a deployment decides, read from its files: levels, hotlines and prompts, the callback and
lifecycle policies, the promises prompts make, working days, how numbers are masked. Plain data
and pure functions: nothing here touches the database.
"""
