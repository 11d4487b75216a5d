"""Why a call ended, as the telephone network says it (a Q.850 cause code) and as a callback agent reads it.

The dialer stores an attempt's cause as Asterisk gave it (``hangup_cause`` 16,
``hangup_cause_text`` "Normal Clearing"); what it means for the attempt (busy,
no answer…) is callback/call_outcomes.py. The web tool shows the code's name
from here, never Asterisk's English text.
"""

from __future__ import annotations

# ITU-T Q.850 causes, those Asterisk reports on a call that ends or fails to connect.
HANGUP_CAUSE_NAMES = {
    0: "原因不明",
    1: "空号",
    2: "无至该网络的路由",
    3: "无至目的地的路由",
    6: "信道不可用",
    16: "正常挂机",
    17: "用户忙",
    18: "无应答",
    19: "振铃无人接",
    20: "用户不在服务区",
    21: "拒接",
    22: "号码已改",
    26: "未选中的用户挂断",
    27: "对方设备故障",
    28: "号码格式错误",
    29: "业务被拒绝",
    31: "正常挂机（未说明）",
    34: "无可用线路",
    38: "网络故障",
    41: "临时故障",
    42: "交换设备拥塞",
    43: "接入信息丢失",
    44: "所需线路不可用",
    47: "资源不可用",
    50: "未开通该业务",
    52: "呼出受限",
    54: "呼入受限",
    57: "无权使用该业务",
    58: "该业务暂不可用",
    65: "不支持的业务",
    66: "不支持的信道类型",
    69: "不支持的功能",
    79: "业务未实现",
    81: "呼叫参考值无效",
    88: "目的地不兼容",
    95: "消息无效",
    96: "缺少必需信息",
    97: "消息类型不存在",
    100: "信息内容无效",
    102: "计时器超时",
    111: "协议错误",
    127: "未知原因",
}


def hangup_cause_name(cause: int | None) -> str:
    """``16`` → 正常挂机; a code not listed reads as its number (``原因码 99``); none, an empty string."""
    if cause is None:
        return ""
    return HANGUP_CAUSE_NAMES.get(cause, f"原因码 {cause}")
