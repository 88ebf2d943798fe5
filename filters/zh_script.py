"""Tells Simplified from Traditional Chinese by counting characters unique to one script.

The table holds common simplified/traditional pairs whose simplified form is not itself in ordinary
traditional use (so 干/幹, 后/後, 云/雲 and glyph-variant pairs like 内/內 are left out on purpose).
"""

from __future__ import annotations

import re
from typing import Literal

_PAIRS = (
    "万萬 与與 东東 严嚴 个個 临臨 为為 举舉 义義 乌烏 乐樂 乡鄉 书書 买買 乱亂 争爭 亏虧 亚亞 "
    "产產 亲親 亿億 仅僅 从從 仓倉 仪儀 们們 价價 众眾 优優 会會 传傳 伤傷 伦倫 伪偽 体體 侠俠 "
    "侣侶 侦偵 侧側 俭儉 债債 倾傾 儿兒 兰蘭 关關 兴興 养養 兽獸 写寫 军軍 农農 冯馮 冲衝 "
    "决決 况況 冻凍 净淨 凉涼 减減 凤鳳 凭憑 击擊 凿鑿 刘劉 则則 刚剛 创創 剂劑 剑劍 剧劇 劝勸 "
    "办辦 务務 动動 励勵 劲勁 劳勞 势勢 勋勳 区區 医醫 华華 协協 单單 卖賣 卢盧 卫衛 "
    "厂廠 厅廳 历歷 厉厲 压壓 厌厭 厕廁 厢廂 县縣 参參 双雙 发發 变變 叙敘 叠疊 号號 叹嘆 吓嚇 "
    "吗嗎 吨噸 听聽 启啟 员員 呛嗆 呜嗚 响響 哑啞 哗嘩 唤喚 啰囉 啸嘯 喷噴 嘱囑 团團 园園 围圍 "
    "国國 图圖 圆圓 圣聖 场場 坏壞 块塊 坚堅 坛壇 坝壩 坟墳 坠墜 垄壟 垒壘 埚堝 堕墮 墙牆 壮壯 "
    "声聲 壳殼 处處 备備 够夠 头頭 夹夾 夺奪 奋奮 奖獎 奥奧 妆妝 妇婦 妈媽 娱娛 婴嬰 孙孫 学學 "
    "宝寶 实實 宠寵 审審 宪憲 宫宮 宽寬 宾賓 对對 寻尋 导導 寿壽 将將 尔爾 尘塵 尝嘗 尽盡 层層 "
    "届屆 属屬 屿嶼 岁歲 岗崗 岛島 峡峽 崭嶄 巩鞏 币幣 帅帥 师師 帐帳 帜幟 带帶 帧幀 帮幫 广廣 "
    "庆慶 库庫 应應 庙廟 庞龐 废廢 开開 异異 弃棄 张張 弥彌 弯彎 弹彈 强強 归歸 当當 录錄 彻徹 "
    "径徑 忆憶 忧憂 怀懷 态態 总總 恋戀 恳懇 恶惡 恼惱 悬懸 惊驚 惧懼 惩懲 惫憊 惭慚 惯慣 愤憤 "
    "愦憒 愿願 慑懾 懒懶 戏戲 战戰 执執 扩擴 扪捫 扫掃 扬揚 扰擾 抚撫 抛拋 抟摶 抠摳 抡掄 抢搶 "
    "护護 报報 担擔 拟擬 拢攏 拣揀 拥擁 拦攔 拧擰 拨撥 择擇 挂掛 挚摯 挛攣 挝撾 挞撻 挟挾 挠撓 "
    "挡擋 挣掙 挤擠 挥揮 捞撈 损損 捡撿 换換 捣搗 掳擄 掷擲 掸撣 掺摻 揽攬 搀攙 搁擱 搂摟 搅攪 "
    "携攜 摄攝 摆擺 摇搖 摊攤 撑撐 撵攆 撷擷 擞擻 敌敵 敛斂 数數 斋齋 斩斬 断斷 无無 旧舊 时時 "
    "显顯 术術 机機 杂雜 权權 来來 极極 构構 标標 树樹 样樣 档檔 桥橋 梦夢 检檢 欢歡 残殘 毕畢 "
    "气氣 汇匯 汉漢 沟溝 没沒 泽澤 浅淺 测測 济濟 湾灣 满滿 灯燈 灵靈 灾災 点點 烟煙 烧燒 热熱 "
    "爱愛 爷爺 牵牽 犹猶 独獨 环環 现現 电電 画畫 疗療 盖蓋 盘盤 矿礦 码碼 础礎 确確 礼禮 离離 "
    "种種 积積 称稱 稳穩 穷窮 竞競 笔筆 简簡 类類 粮糧 紧緊 红紅 约約 级級 纪紀 纳納 纸紙 线線 "
    "练練 组組 细細 织織 终終 绍紹 经經 结結 给給 络絡 绝絕 统統 继繼 绩績 续續 维維 综綜 绿綠 "
    "编編 缘緣 缩縮 网網 罗羅 职職 联聯 脑腦 脚腳 舰艦 艺藝 节節 苏蘇 药藥 获獲 营營 蓝藍 虽雖 "
    "补補 装裝 见見 规規 视視 览覽 觉覺 触觸 计計 订訂 认認 讨討 让讓 训訓 议議 讯訊 记記 讲講 "
    "许許 论論 设設 访訪 证證 评評 识識 诉訴 词詞 译譯 试試 诗詩 诚誠 话話 询詢 该該 详詳 语語 "
    "误誤 说說 请請 诸諸 读讀 课課 谁誰 调調 谈談 谓謂 谢謝 负負 财財 责責 败敗 货貨 质質 购購 "
    "贵貴 贸貿 费費 资資 赏賞 赛賽 赞贊 趋趨 践踐 车車 轨軌 转轉 轮輪 软軟 轻輕 载載 较較 辅輔 "
    "辆輛 输輸 边邊 达達 过過 运運 还還 这這 进進 远遠 违違 连連 选選 递遞 遗遺 邮郵 邻鄰 郑鄭 "
    "释釋 针針 钟鐘 钢鋼 钱錢 铁鐵 铜銅 银銀 链鏈 销銷 锁鎖 错錯 键鍵 长長 门門 闭閉 问問 间間 "
    "闻聞 阅閱 队隊 阳陽 阴陰 阵陣 阶階 际際 陆陸 陈陳 险險 随隨 隐隱 难難 雾霧 页頁 顶頂 项項 "
    "顺順 须須 顾顧 预預 领領 频頻 题題 颜顏 额額 风風 飞飛 饭飯 饮飲 馆館 马馬 验驗 骑騎 鱼魚 "
    "鸟鳥 鸡雞 齐齊 龙龍 "
)

SIMPLIFIED_TO_TRADITIONAL: dict[str, str] = {pair[0]: pair[1] for pair in _PAIRS.split()}
SIMPLIFIED_ONLY: frozenset[str] = frozenset(SIMPLIFIED_TO_TRADITIONAL)
TRADITIONAL_ONLY: frozenset[str] = frozenset(SIMPLIFIED_TO_TRADITIONAL.values())

# Share of script-specific characters one side needs before the text counts as that script.
DOMINANCE = 0.8


_SIMPLIFIED = re.compile(f"[{''.join(sorted(SIMPLIFIED_ONLY))}]")
_TRADITIONAL = re.compile(f"[{''.join(sorted(TRADITIONAL_ONLY))}]")


def script_counts(text: str) -> tuple[int, int]:
    """(simplified-only, traditional-only) character counts of ``text``."""
    return len(_SIMPLIFIED.findall(text)), len(_TRADITIONAL.findall(text))


def chinese_script(text: str) -> Literal["Hans", "Hant"] | None:
    """ "Hans" or "Hant" when one script clearly dominates the script-specific characters, else None."""
    simplified, traditional = script_counts(text)
    total = simplified + traditional
    if total == 0:
        return None
    share = simplified / total
    if share >= DOMINANCE:
        return "Hans"
    if share <= 1 - DOMINANCE:
        return "Hant"
    return None
